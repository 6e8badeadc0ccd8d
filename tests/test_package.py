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
jobs = [("evaluate", [])]
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
    assert len(composed) == 1 + experiments + searches and experiments >= 15 and searches >= 4
