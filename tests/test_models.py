import pytest
import timm
import torch

from s3.cost import count_params
from s3.models import S3Transformer, Supernet, load_checkpoint, load_state_dict
from s3.models.checkpoint import to_native
from s3.space import SearchSpace
from tests.conftest import RELEASED, released_arch

TINY = dict(img_size=32, patch_size=2, num_classes=10)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(RELEASED))
def test_released_models_match_timm(name):
    _, _, timm_name, params = RELEASED[name]
    torch.manual_seed(0)
    ours = S3Transformer(released_arch(name)).eval()
    reference = timm.create_model(timm_name, pretrained=False).eval()
    assert n_params(ours) == n_params(reference) == params
    load_state_dict(ours, to_native(reference.state_dict()))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-4, rtol=0)


def test_official_zoo_checkpoint_loads(tmp_path):
    """Zoo files hold {'model': sd} with persistent index/mask buffers; build one from timm."""
    arch = released_arch("S3-T")
    reference = timm.create_model("swin_s3_tiny_224").eval()
    sd = to_native(reference.state_dict())
    sd["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    sd["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49 * 49, dtype=torch.long)
    torch.save({"model": sd, "epoch": 299}, tmp_path / "S3-T.pth")
    torch.save(reference.state_dict(), tmp_path / "timm.pth")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = reference(x)
        for f in ("S3-T.pth", "timm.pth"):
            model = load_checkpoint(S3Transformer(arch), tmp_path / f).eval()
            torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=0)


def test_lightning_checkpoint_loads(tmp_path, tiny_space):
    arch = tiny_space.sample(torch.Generator().manual_seed(1))
    source = S3Transformer(arch, **TINY)
    ckpt = {"pytorch-lightning_version": "2.4.0", "epoch": 3,
            "state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}
    torch.save(ckpt, tmp_path / "last.ckpt")
    target = load_checkpoint(S3Transformer(arch, **TINY), tmp_path / "last.ckpt")
    for k, v in source.state_dict().items():
        assert torch.equal(v, target.state_dict()[k]), k


def test_mismatched_checkpoint_names_key_and_shapes(tmp_path, tiny_space):
    small, large = tiny_space.smallest(), tiny_space.largest()
    torch.save({"model": S3Transformer(small, **TINY).state_dict()}, tmp_path / "small.pth")
    with pytest.raises(ValueError, match=r"key 'patch_embed.proj.weight' has shape \(32, 3, 2, 2\) in the checkpoint "
                                         r"but \(48, 3, 2, 2\) in the model"):
        load_checkpoint(S3Transformer(large, **TINY), tmp_path / "small.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        load_checkpoint(S3Transformer(small, **TINY), tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(S3Transformer(small, **TINY), tmp_path / "missing.pth")


def test_extracted_subnets_equal_the_supernet(tiny_space):
    torch.manual_seed(0)
    supernet = Supernet(tiny_space, num_classes=10).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    archs = [tiny_space.sample(g) for _ in range(6)] + [tiny_space.largest(), tiny_space.smallest()]
    for arch in archs:
        model = supernet.extract(arch).eval()
        assert n_params(model) == count_params(arch, 32, 2, 10)
        with torch.no_grad():
            torch.testing.assert_close(supernet(x, arch), model(x), atol=1e-5, rtol=0)
    assert n_params(supernet) == n_params(S3Transformer(tiny_space.largest(), **TINY))


def test_supernet_gradients_land_in_the_active_slices(tiny_space):
    """Training a subnet through the supernet gives the extracted model's gradients, sliced."""
    torch.manual_seed(0)
    supernet = Supernet(tiny_space, num_classes=10, drop_path_rate=0.0)
    arch = tiny_space.sample(torch.Generator().manual_seed(5), fixed={(2, "depth"): 2})  # stage 2 holds 3 blocks
    model = supernet.extract(arch)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    torch.nn.functional.cross_entropy(supernet(x, arch), y).backward()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    qkv = supernet.layers[0].blocks[0].attn.qkv
    qkv.weight.data = qkv.weight.grad  # export() slices .data: reuse it to slice the gradient
    torch.testing.assert_close(qkv.export()["weight"], model.layers[0].blocks[0].attn.qkv.weight.grad, atol=1e-6, rtol=0)
    unused = supernet.layers[2].blocks[2]  # a block deeper than the arch never gets a gradient
    assert len(supernet.layers[2].blocks) == 3 and unused.mlp.fc1.weight.grad is None
    assert supernet.layers[2].blocks[1].mlp.fc1.weight.grad.abs().sum() > 0


def test_set_arch_outside_the_space_is_rejected(tiny_space):
    supernet = Supernet(tiny_space, num_classes=10)
    with pytest.raises(ValueError, match=r"stage 1 embed_dim=128 not in \[64, 96\]"):
        supernet.set_arch(tiny_space.largest().replace_stage(1, embed_dim=128))
    with pytest.raises(ValueError, match="img_size=64 differs"):
        Supernet(tiny_space, img_size=64)
    with pytest.raises(ValueError, match=r"expected \(B, 3, 32, 32\)"):
        supernet(torch.randn(1, 3, 28, 28))


def test_qkv_and_table_slicing_follow_the_spec(tiny_space):
    """q/k/v rows [0:32h], [32H:32H+32h], [64H:64H+32h]; central crop of the bias table."""
    supernet = Supernet(tiny_space, num_classes=10)
    arch = tiny_space.largest().replace_stage(0, num_heads=(1, 1), window_size=(4, 4))
    model = supernet.extract(arch)
    big, small = supernet.layers[0].blocks[0].attn, model.layers[0].blocks[0].attn
    H, C = 2, 48
    rows = torch.cat([torch.arange(0, 32), torch.arange(32 * H, 32 * H + 32), torch.arange(64 * H, 64 * H + 32)])
    assert torch.equal(small.qkv.weight, big.qkv.weight[rows, :C])
    table = big.relative_position_bias_table.view(15, 15, H)  # window 8 -> 15x15 offsets
    assert torch.equal(small.relative_position_bias_table, table[4:11, 4:11, :1].reshape(49, 1))
    merge_big, merge_small = supernet.layers[0].downsample, model.layers[0].downsample
    cols = torch.cat([torch.arange(k * 48, k * 48 + 48) for k in range(4)])
    assert torch.equal(merge_small.reduction.weight, merge_big.reduction.weight[:, cols])


def test_copy_overlap_copies_overlapping_slices():
    stage = {"depth": [1, 2], "embed_dim": [16, 32], "mlp_ratio": [2.0], "num_heads": [1], "window_size": [2, 4]}
    old = SearchSpace.from_dict({"img_size": 32, "patch_size": 4, "stages": [stage, stage]})
    grown = dict(stage, embed_dim=[32, 48], depth=[2, 3], window_size=[4, 8], num_heads=[1, 2])
    new = SearchSpace.from_dict({"img_size": 32, "patch_size": 4, "stages": [grown, stage]})
    torch.manual_seed(0)
    a, b = Supernet(old, num_classes=5).eval(), Supernet(new, num_classes=5).eval()
    b.copy_overlap(a)
    common = old.largest().replace_stage(0, window_size=(4, 4))
    assert common in new
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(x, common), b(x, common), atol=1e-5, rtol=0)
