"""Compose the real Hydra config in-process (as train.py would) and run it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import torch

from s3.config import compose_config as compose_cfg  # noqa: F401  (the tests' name for it)
from s3.constraints import Constraints
from s3.search.evaluator import CandidateEvaluator
from s3.space import Arch

# A few hundred Fashion-MNIST images: real data, seconds per run.
FAST = ["data.max_train=320", "data.max_val=128", "data.batch_size=32", "data.eval_batch_size=128",
        "data.search_per_class=4", "trainer.max_epochs=1", "trainer.log_every_n_steps=1",
        "trainer.num_sanity_val_steps=0"]  # (no sanity validation: it adds a sixth to a tiny training)

# A space search on one supernet per iteration: for tests of one chain's mechanics (resume, DDP,
# overwrite, early stop), which the default's second supernet (search.confirm) would only double.
ONE_SUPERNET = "search.confirm=false"

# A search of 3 generations of 6 candidates: 18 archs scored, 2 picks validated.
SMALL = ["search.population=6", "search.generations=3", "search.parents=3", "search.mutations=2",
         "search.crossovers=2", "search.top_k=2"]


def run_search(out: Path, *overrides: str) -> dict:
    """search.py's run in-process, on the FAST data, into the run directory `out`."""
    from s3.search.session import SearchSession

    cfg = compose_cfg([*FAST, *overrides], out, config_name="search")
    return SearchSession.open(cfg).run()


def csv_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path)))


def png_size(path: Path) -> tuple[int, int]:
    """A real PNG's (width, height) (a plot, not an empty or truncated file)."""
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()
        return img.size


class SyntheticEvaluator(CandidateEvaluator):
    """A fitness known in closed form: the search logic is tested without a supernet."""

    def __init__(self, constraints: Constraints, fitness, fabric=None):
        self.constraints, self.fitness, self._cache = constraints, fitness, {}
        self.fabric, self.device, self.workers, self._pool = fabric, torch.device("cpu"), 1, None

    def measure(self, arch: Arch, split=None) -> dict:
        return {"top1": self.fitness(arch), "loss": 0.0}


def tiny_arch_file(tmp_path: Path) -> Path:
    """One arch of the tiny space (seed 0) as an arch YAML: what `arch=` takes."""
    import torch

    from s3.space import SearchSpace
    from tests.conftest import SPACES

    return SearchSpace.from_yaml(SPACES / "tiny.yaml").sample(torch.Generator().manual_seed(0)).to_yaml(
        tmp_path / "arch.yaml")


def read_archs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]



class Interrupt(L.Callback):
    """Stops training after `epochs` epochs, as a killed job would (test only)."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def fake_imagenet(root: Path, train: int = 4, val: int = 2, size: tuple[int, int] = (240, 260)) -> Path:
    """An ImageFolder of random JPEGs in two ImageNet class folders: `train` and `val` per class."""
    import torch
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, n in (("train", train), ("val", val)):
        for c in ("n01440764", "n01443537"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = torch.randint(0, 255, (*size, 3), dtype=torch.uint8, generator=g).numpy()
                Image.fromarray(pixels).save(root / split / c / f"{c}_{i}.JPEG")
    return root


def user_error(capsys, fn, *args) -> str:
    """What an entry point prints for bad input, in-process: `fn` wrapped as the entry points wrap
    their `prepare`, which must exit with code 2 and one `error: ...` line on stderr."""
    import pytest

    from s3.cli import user_errors_exit

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        user_errors_exit(fn)(*args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err
