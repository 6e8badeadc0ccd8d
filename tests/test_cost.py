import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from s3.cost import count_macs, count_params
from s3.models import S3Transformer
from s3.space import Arch, SearchSpace
from tests.conftest import SPACES, released_arch

# a space where Q-K-V dim differs from the embed dim, windows clamp, and shifted windows occur
MIXED = SearchSpace.from_dict({
    "img_size": 64, "patch_size": 2,
    "stages": [
        {"depth": [2, 3], "embed_dim": [24, 40], "mlp_ratio": [1.5, 3.5], "num_heads": [1, 3], "window_size": [4, 8]},
        {"depth": [2], "embed_dim": [48], "mlp_ratio": [2.0], "num_heads": [2, 5], "window_size": [4, 16]},
        {"depth": [1, 2], "embed_dim": [72], "mlp_ratio": [4.0], "num_heads": [1], "window_size": [8, 4]},
        {"depth": [2], "embed_dim": [96], "mlp_ratio": [2.5], "num_heads": [3], "window_size": [4, 7]},
    ],
})


@pytest.mark.parametrize("space, kw", [
    (SearchSpace.from_yaml(SPACES / "tiny.yaml"), dict(img_size=32, patch_size=2, num_classes=10)),
    (MIXED, dict(img_size=64, patch_size=2, num_classes=37, head_dim=16)),
])
def test_params_exact_and_flops_match_the_flop_counter(space, kw):
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        arch = space.sample(g)
        model = S3Transformer(arch, **kw).eval()
        assert count_params(arch, **kw) == sum(p.numel() for p in model.parameters())
        counter = FlopCounterMode(display=False)
        # the math backend runs attention as matmuls the counter sees (CPU flash kernels it does not)
        with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            model(torch.randn(1, 3, kw["img_size"], kw["img_size"]))
        measured = counter.get_total_flops() / 2
        assert count_macs(arch, **kw) == measured  # exact, as the README says


def test_released_model_costs():
    assert count_params(released_arch("S3-T")) == 28_328_674
    assert count_params(released_arch("S3-S")) == 49_737_298
    assert count_params(released_arch("S3-B")) == 71_125_762
    # exact MACs of the counter-checked cost model (the paper reports 4.7G for S3-T)
    assert [count_macs(released_arch(n)) for n in ("S3-T", "S3-S", "S3-B")] == [4_623_332_352, 9_404_703_744,
                                                                               13_655_012_352]


def test_illegal_window_is_reported():
    arch = Arch.create([1, 1, 1, 1], [8, 8, 8, 8], [1.0] * 4, [1] * 4, [5, 2, 2, 2])
    with pytest.raises(ValueError, match=r"Arch.window_sizes\[0\]\[0\] .*: window_size=5 neither divides the stage "
                                         r"resolution 16 nor covers it; legal: \[1, 2, 4, 8, 16\]"):
        count_macs(arch, img_size=32, patch_size=2)
