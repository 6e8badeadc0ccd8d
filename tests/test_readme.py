"""Every code block of the README runs as written: each `python train.py|search.py|evaluate.py ...`
line composes (and resolves) its Hydra config with the overrides it shows, each `make` target
exists, and each Python block runs, with a stand-in for the official S3-T checkpoint it loads."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from tests.conftest import ROOT, SPACES, released_arch
from tests.helpers import compose_cfg

README = ROOT / "README.md"
SCRIPTS = {"train.py": "train", "search.py": "search", "evaluate.py": "evaluate", "export.py": "export"}
PLACEHOLDER = re.compile(r"<(\w+)>")


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.S | re.M)


def commands() -> list[str]:
    """The README's shell commands: continuation lines joined, comments dropped."""
    out = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                out.append(line)
    return out


def run_dirs(root: Path) -> dict[str, Path]:
    """What the README's `<name>` placeholders stand for: run directories of earlier stages."""
    import torch

    from s3.space import SearchSpace

    space = SearchSpace.from_yaml(SPACES / "tiny.yaml")
    dirs = {name: root / name for name in ("search", "supernet", "space", "retrain")}
    space.sample(torch.Generator().manual_seed(0)).to_yaml(dirs["search"] / "top" / "top1.yaml")
    (dirs["space"] / "conf" / "space").mkdir(parents=True)
    (dirs["space"] / "conf" / "space" / "searched.yaml").write_text((SPACES / "tiny.yaml").read_text())
    return dirs


def first_of_each_sweep(overrides: list[str]) -> list[str]:
    """A multirun's first job: `seed=1,2,3` -> `seed=1`."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [f"{o.get_key_element()}={next(o.sweep_string_iterator())}" if o.is_sweep_override() else o.input_line
            for o in parsed]


def test_the_readme_has_the_blocks_this_test_reads():
    assert len(commands()) >= 20 and blocks("python")
    assert all(c.split()[0] in ("make", "python") or "=" in c.split()[0] for c in commands())


@pytest.mark.parametrize("command", commands())
def test_every_command_of_the_readme_composes_as_written(command, tmp_path):
    words = shlex.split(command)
    while "=" in words[0]:  # an environment variable before the command
        words = words[1:]
    if words[0] == "make":
        assert re.search(rf"^{words[1]}:", (ROOT / "Makefile").read_text(), re.M), command
        return
    assert words[0] == "python" and words[1] in SCRIPTS, command
    dirs = run_dirs(tmp_path)
    unknown = set(PLACEHOLDER.findall(command)) - set(dirs)
    assert not unknown, f"{command}: placeholders {unknown}; this test knows {sorted(dirs)}"
    overrides = [PLACEHOLDER.sub(lambda m: str(dirs[m.group(1)]), w) for w in words[2:] if w != "-m"]
    cfg = compose_cfg(first_of_each_sweep(overrides), tmp_path / "run", config_name=SCRIPTS[words[1]])
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.to_container(task, resolve=True)  # every interpolation resolves
    OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_every_python_block_of_the_readme_runs(index, tmp_path):
    import torch

    from s3.models import S3Transformer

    arch = released_arch("S3-T")  # stand-ins for the model zoo's S3-T.yaml and S3-T.pth, same shapes
    arch.to_yaml(tmp_path / "S3-T.yaml")
    torch.save({"model": S3Transformer(arch).state_dict()}, tmp_path / "S3-T.pth")
    (tmp_path / "conf").symlink_to(ROOT / "conf")
    from s3.export import export_model  # a stand-in for export.py's model directory: `<export>`
    from s3.space import SearchSpace

    tiny = SearchSpace.from_yaml(SPACES / "tiny.yaml").sample(torch.Generator().manual_seed(0))
    export_model(S3Transformer(tiny, img_size=32, patch_size=2, num_classes=10), tmp_path / "export",
                 {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3}, "stand-in",
                 onnx_images=torch.randn(2, 3, 32, 32))
    code = blocks("python")[index].replace("<export>", str(tmp_path / "export"))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
