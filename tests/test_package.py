"""The package's shape: its configs compose from anywhere, and its modules import downwards only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

COMPOSE_EVERYTHING = """
import json, pathlib, sys
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

assert not [m for m in sys.modules if m == "s3" or m.startswith("s3.")], "imported s3 before composing"
conf = pathlib.Path(sys.argv[1])
jobs = [("evaluate", []), ("export", ["data=folder", "data.root=/nowhere"])]
jobs += [("search" if e.stem.startswith("space") else "train", [f"experiment={e.stem}"])
         for e in sorted((conf / "experiment").glob("*.yaml"))]
jobs += [("search", [f"search={s.stem}"]) for s in sorted((conf / "search").glob("*.yaml"))]
composed = []
with initialize_config_dir(str(conf), version_base="1.3"):
    for name, overrides in jobs:
        cfg = compose(name, overrides=overrides)
        assert cfg.trainer.precision in ("32-true", "bf16-mixed", "16-mixed"), cfg.trainer.precision  # ${cpu_precision:}
        if name == "search":
            OmegaConf.to_container(cfg.search, resolve=True)
        composed.append([name, *overrides])
print(json.dumps(composed))
"""


@pytest.mark.slow  # a fresh interpreter (make test-fast skips it)
def test_every_experiment_and_search_composes_with_hydras_own_compose_in_a_fresh_interpreter(tmp_path):
    """A notebook or another tool composes conf/ with Hydra's `initialize_config_dir` + `compose`
    without importing anything of s3 first: Hydra's plugin discovery imports the package, which
    registers the schemas (`base_uniform`, `base_evolution`, ...) and the resolvers."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed package, as a user has it
    proc = subprocess.run([sys.executable, "-c", COMPOSE_EVERYTHING, str(ROOT / "conf")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    composed = json.loads(proc.stdout.strip().splitlines()[-1])
    experiments = len(list((ROOT / "conf" / "experiment").glob("*.yaml")))
    searches = len(list((ROOT / "conf" / "search").glob("*.yaml")))
    assert len(composed) == 2 + experiments + searches and experiments >= 15 and searches >= 4


# -- the import graph ------------------------------------------------------------------------------------
# Lowest first: a module imports modules of its own layer or below, never above.
LAYERS = [
    ("base", ["s3.errors", "s3.io", "s3.console", "s3.precision", "s3.options", "s3.latency", "s3.memory"]),
    ("core", ["s3.space", "s3.cost", "s3.constraints", "s3.run", "s3.sweep", "s3.config"]),
    ("models and data", ["s3.models", "s3.data"]),
    ("lightning modules", ["s3.lit"]),
    ("training and evaluation", ["s3.train", "s3.evaluate", "s3.export", "s3.latency_predictor"]),
    ("search", ["s3.search"]),
    ("entry points and registration", ["s3.cli", "s3.registry", "s3"]),
]


def import_graph() -> dict[str, set[str]]:
    """Every module of s3/ -> the s3 modules it imports, anywhere in it (inside functions and
    `if TYPE_CHECKING:` blocks too: a circle there is still a circle for a reader)."""
    import ast

    modules = {}
    for path in (ROOT / "s3").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "s3":
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == "s3"}
        graph[name] = deps - {name}
    return graph


def layer(module: str) -> int:
    matches = [(len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module}: in no layer of tests/test_package.py's LAYERS"
    return max(matches)[1]


def test_the_package_has_no_import_circle_and_no_module_imports_one_above_its_layer():
    graph = import_graph()
    assert len(graph) > 50 and graph["s3.search.session"] >= {"s3.search.arch_search", "s3.run"}
    upward = sorted(f"{m} ({LAYERS[layer(m)][0]}) -> {d} ({LAYERS[layer(d)][0]})"
                    for m, deps in graph.items() for d in deps if layer(d) > layer(m) and m != "s3")
    assert not upward, upward
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:  # depth first: meeting a module on the path is a circle
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            assert state.get(dep) != "open", " -> ".join([*path, module, dep])
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_only_the_run_directory_module_names_the_lock_and_the_markers_of_finished_runs():
    """Every entry point's run directory goes through s3/run.py: no other module spells a marker
    file, the lock or the rank-zero check."""
    spelled = {'"finished.json"', '"result.json"', '"evaluation.json"', '".lock"', "FileLock", 'rank_zero_only, "rank"'}
    found = sorted(f"{path.relative_to(ROOT)}: {word}" for path in (ROOT / "s3").rglob("*.py") if path.name != "run.py"
                   for word in spelled if word in path.read_text())
    assert not found, found


def test_the_private_names_of_lightning_this_project_relies_on_still_exist(tmp_path):
    """Each is used where no public route exists, with a comment saying why (s3/lit/callbacks.py,
    s3/lit/loggers.py): an upgrade that removes one fails here, not in a preempted run."""
    import lightning as L

    from s3.lit.loggers import ResumableCSVLogger, WandbLogger

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert trainer._signal_connector.received_sigterm is False
    csv_logger = ResumableCSVLogger(tmp_path)
    assert csv_logger._experiment is None and isinstance(csv_logger.experiment.metrics, list)
    assert isinstance(WandbLogger(offline=True, save_dir=str(tmp_path))._wandb_init, dict)
