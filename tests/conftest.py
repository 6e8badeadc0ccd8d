import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s3.space import Arch, SearchSpace

ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one thread each,
    os.environ["OMP_NUM_THREADS"] = "1"  # for this process and the entry points it starts
    torch.set_num_threads(1)
SPACES = ROOT / "conf" / "space"

# The released models (S3-METHOD.md section 1).
RELEASED = {
    "S3-T": ([2, 2, 6, 2], [7, 7, 14, 7], "swin_s3_tiny_224", 28_328_674),
    "S3-S": ([2, 2, 18, 2], [14, 14, 14, 14], "swin_s3_small_224", 49_737_298),
    "S3-B": ([2, 2, 30, 2], [7, 7, 14, 7], "swin_s3_base_224", 71_125_762),
}


def released_arch(name: str) -> Arch:
    depths, windows, _, _ = RELEASED[name]
    return Arch.create(depths, [96, 192, 384, 768], [4.0] * 4, [3, 6, 12, 24], windows)


@pytest.fixture(scope="session")
def supernet_run(tmp_path_factory) -> Path:
    """The tiny supernet run, trained once per test process (10 steps on 320 Fashion-MNIST images)
    for the tests that read a finished supernet: they read it and never write into it."""
    from s3.train import run
    from tests.helpers import FAST, compose_cfg

    out = tmp_path_factory.mktemp("supernet")
    run(compose_cfg(FAST, out))
    return out


@pytest.fixture
def supernet_ckpt(supernet_run) -> Path:
    """The tiny supernet (tests/conftest.py), trained once on a few hundred Fashion-MNIST images."""
    return supernet_run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def tiny_space() -> SearchSpace:
    return SearchSpace.from_yaml(SPACES / "tiny.yaml")


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def isolated():
    """Every test leaves the process as it found it, so that the suite passes in any order
    (`make test` shuffles it): environment variables, the global RNGs, Hydra's singletons (a
    multirun test leaves HydraConfig in MULTIRUN mode with a sweep group) and W&B's global run."""
    env = dict(os.environ)
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    yield
    os.environ.clear()
    os.environ.update(env)
    random.setstate(rng[0])
    np.random.set_state(rng[1])
    torch.set_rng_state(rng[2])
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
