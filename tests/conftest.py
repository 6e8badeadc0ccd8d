from pathlib import Path

import pytest
import torch

from s3.space import Arch, SearchSpace

ROOT = Path(__file__).resolve().parents[1]
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
def tiny_space() -> SearchSpace:
    return SearchSpace.from_yaml(SPACES / "tiny.yaml")


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
