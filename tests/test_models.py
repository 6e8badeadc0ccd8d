import math
import re

import pytest
import timm
import torch
import torch.nn.functional as F

from s3.cost import count_params
from s3.models import S3Transformer, Supernet, load_checkpoint, load_state_dict
from s3.models.checkpoint import to_native
from s3.space import Arch, SearchSpace
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


# Parameters whose axes hold several blocks, each sliced on its own: q/k/v rows, a merge's 4 neighbours.
GROUPS = {"qkv.weight": (3, 1), "qkv.bias": (3,), "downsample.reduction.weight": (1, 4),
          "downsample.norm.weight": (4,), "downsample.norm.bias": (4,)}


def shared(name: str, a: torch.Tensor, b: torch.Tensor) -> tuple[tuple[torch.Tensor, tuple], ...]:
    """(view, meshgrid index) of each of two tensors of parameter `name` at the weights they share:
    the leading entries of every group of every axis, and in a relative-position bias table the
    same offsets (dy, dx) (row (dy + T - 1) * (2T - 1) + dx + T - 1 of a table for window T) and the
    leading heads."""
    if name.endswith("relative_position_bias_table"):
        tables = [(math.isqrt(t.shape[0]) + 1) // 2 for t in (a, b)]
        m = min(tables)
        offsets, heads = torch.arange(1 - m, m), torch.arange(min(a.shape[1], b.shape[1]))
        return tuple((t.view(2 * T - 1, 2 * T - 1, -1), torch.meshgrid(offsets + T - 1, offsets + T - 1, heads,
                                                                         indexing="ij"))
                     for t, T in zip((a, b), tables))
    groups = next((g for k, g in GROUPS.items() if name.endswith(k)), (1,) * a.dim())
    keep = [min(x, y) // g for x, y, g in zip(a.shape, b.shape, groups)]
    return tuple((t, torch.meshgrid(*[torch.cat([torch.arange(i * n // g, i * n // g + k) for i in range(g)])
                                      for n, k, g in zip(t.shape, keep, groups)], indexing="ij"))
                 for t in (a, b))


def swin_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * num_windows, w * w, C), timm's window_partition."""
    B, H, W, C = x.shape
    return x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)


def swin_reverse(windows: torch.Tensor, w: int, H: int) -> torch.Tensor:
    """The inverse, timm's window_reverse."""
    C = windows.shape[-1]
    return windows.view(-1, H // w, H // w, w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, H, H, C)


def swin_forward(p: dict, arch: Arch, x: torch.Tensor, patch: int, head_dim: int) -> torch.Tensor:
    """Swin's forward written out with plain torch ops from standalone weights `p` (timm's
    SwinTransformerBlock: roll, partition, bias gathered by offset, shift mask from slices)."""
    x = F.conv2d(x, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=patch).permute(0, 2, 3, 1)
    x = F.layer_norm(x, x.shape[-1:], p["patch_embed.norm.weight"], p["patch_embed.norm.bias"])
    for i in range(arch.num_stages):
        B, H, _, C = x.shape
        for j, (_, heads, window) in enumerate(arch.blocks(i)):
            prefix = f"layers.{i}.blocks.{j}."
            blk = {key.removeprefix(prefix): t for key, t in p.items() if key.startswith(prefix)}
            w = min(window, H)
            s = w // 2 if j % 2 and w < H else 0
            N = w * w
            h = F.layer_norm(x, (C,), blk["norm1.weight"], blk["norm1.bias"])
            h = swin_partition(torch.roll(h, (-s, -s), (1, 2)), w)
            qkv = F.linear(h, blk["attn.qkv.weight"], blk["attn.qkv.bias"]).view(-1, N, 3, heads, head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            attn = (q * head_dim**-0.5) @ k.transpose(-2, -1)
            yx = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
            dy, dx = yx[:, :, None] - yx[:, None, :]
            bias = blk["attn.relative_position_bias_table"][((dy + w - 1) * (2 * w - 1) + dx + w - 1).flatten()]
            attn = attn.view(B, -1, heads, N, N) + bias.view(N, N, heads).permute(2, 0, 1)
            if s:
                region, spans = torch.zeros(1, H, H, 1, dtype=x.dtype), (slice(0, -w), slice(-w, -s), slice(-s, None))
                for n, (hs, ws) in enumerate((hs, ws) for hs in spans for ws in spans):
                    region[:, hs, ws, :] = n
                ids = swin_partition(region, w).squeeze(-1)
                mask = (ids[:, None, :] - ids[:, :, None]).ne(0) * -100.0
                attn = attn + mask[None, :, None]
            h = (attn.view(-1, heads, N, N).softmax(-1) @ v).transpose(1, 2).reshape(-1, N, heads * head_dim)
            h = F.linear(h, blk["attn.proj.weight"], blk["attn.proj.bias"])
            x = x + torch.roll(swin_reverse(h, w, H), (s, s), (1, 2))
            h = F.layer_norm(x, (C,), blk["norm2.weight"], blk["norm2.bias"])
            h = F.gelu(F.linear(h, blk["mlp.fc1.weight"], blk["mlp.fc1.bias"]))
            x = x + F.linear(h, blk["mlp.fc2.weight"], blk["mlp.fc2.bias"])
        if i + 1 < arch.num_stages:
            x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
            merge = f"layers.{i}.downsample."
            x = F.layer_norm(x, (4 * C,), p[merge + "norm.weight"], p[merge + "norm.bias"])
            x = F.linear(x, p[merge + "reduction.weight"])
    x = F.layer_norm(x, x.shape[-1:], p["norm.weight"], p["norm.bias"]).mean(dim=(1, 2))
    return F.linear(x, p["head.weight"], p["head.bias"])


def test_supernet_values_and_gradients_equal_swins_forward_on_the_sliced_weights(tiny_space):
    """The supernet's subnet against Swin written out in plain torch on the active slices (taken
    here by index, not by the supernet's slicing): equal logits, and every parameter's gradient is
    the reference's gradient inside the active slice and zero outside it. The extracted model runs
    the supernet's own layouts and bias index, so this is the check that shares neither. Shifted
    windows smaller than their block's bias table in stages 0-2 (a central crop of the table)."""
    torch.manual_seed(0)
    supernet = Supernet(tiny_space, num_classes=10, drop_path_rate=0.0, head_dim=8).double()
    for p in supernet.parameters():  # away from the init's zero biases, unit norms and small tables
        torch.nn.init.normal_(p, std=0.3)
    arch = Arch.create([2, 2, 2, 2], [32, 64, 128, 128], [[3.0, 2.0], [4.0, 2.0], [2.0, 3.0], [2.0, 4.0]],
                       [[1, 2], [2, 1], [3, 2], [2, 4]], [[8, 4], [8, 4], [4, 2], [2, 2]])
    x, y = torch.randn(2, 3, 32, 32, dtype=torch.float64), torch.tensor([1, 7])
    logits = supernet(x, arch)
    F.cross_entropy(logits, y).backward()
    full = dict(supernet.named_parameters())
    standalone = S3Transformer(arch, **TINY, head_dim=8).state_dict()
    weights = {}
    for name, t in standalone.items():
        (view, index), _ = shared(name, full[name], t)
        weights[name] = view[index].reshape(t.shape).detach().requires_grad_()
    reference = swin_forward(weights, arch, x, patch=2, head_dim=8)
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-10)
    grads = torch.autograd.grad(F.cross_entropy(reference, y), list(weights.values()))
    for (name, expected), grad in zip(weights.items(), grads):
        (view, index), _ = shared(name, full[name].grad, expected)
        torch.testing.assert_close(view[index].reshape(expected.shape), grad, rtol=0, atol=1e-10, msg=name)
        view[index] = 0
        assert not full[name].grad.any(), f"{name}: gradient outside the active slice"
    assert all(full[n].grad is None for n in full if n not in weights)  # stage 2's third block


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


def test_copy_overlap_after_training_copies_every_tensors_shared_slice_and_keeps_the_rest():
    """The space search's next supernet inherits the previous one's weights (`init_from`). After a
    few SGD steps on random subnets moved every tensor of A off its init, each parameter of B (of a
    space bigger in some dims, smaller in others) holds A's values on the slice they share, taken
    here by index (bias tables: the same offsets, so a bigger table holds a smaller one in its
    centre), and its own init everywhere else; no parameter kind is left out."""
    def stage(depth, dim, ratio, heads, windows):
        return {"depth": depth, "embed_dim": dim, "mlp_ratio": ratio, "num_heads": heads, "window_size": windows}

    old = SearchSpace.from_dict({"img_size": 32, "patch_size": 4, "stages": [
        stage([1, 2], [16, 32], [2.0, 3.0], [1, 2], [2, 4]), stage([1, 3], [32, 48], [2.0], [1, 3], [2, 4])]})
    new = SearchSpace.from_dict({"img_size": 32, "patch_size": 4, "stages": [
        stage([3], [48], [1.0], [1], [2, 8]), stage([2], [32], [4.0], [2, 4], [2])]})
    torch.manual_seed(0)
    a, b = Supernet(old, num_classes=5, head_dim=8), Supernet(new, num_classes=5, head_dim=8)
    init = {n: p.detach().clone() for n, p in a.named_parameters()}
    sgd, g = torch.optim.SGD(a.parameters(), lr=1.0), torch.Generator().manual_seed(0)
    for arch in [old.largest(), old.sample(g), old.sample(g), old.largest()]:
        sgd.zero_grad()
        F.cross_entropy(a(torch.randn(4, 3, 32, 32), arch), torch.randint(5, (4,))).backward()
        sgd.step()
    assert not any(torch.equal(p, init[n]) for n, p in a.named_parameters()), "a tensor of A kept its init"
    theirs, before = dict(a.named_parameters()), {n: p.detach().clone() for n, p in b.named_parameters()}
    b.copy_overlap(a)
    for name, mine in b.named_parameters():
        expected = before[name].clone()
        if name in theirs:
            (src, i), (dst, j) = shared(name, theirs[name].detach(), expected)
            assert not torch.equal(dst[j], src[i]), name  # the copy is visible
            dst[j] = src[i]
        assert torch.equal(mine, expected), name
    kinds = {re.sub(r"^layers\.\d+\.(blocks\.\d+\.)?", "", n) for n, _ in b.named_parameters()}
    assert kinds == {"patch_embed.proj.weight", "patch_embed.proj.bias", "patch_embed.norm.weight",
                     "patch_embed.norm.bias", "norm1.weight", "norm1.bias", "attn.relative_position_bias_table",
                     "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias", "norm2.weight",
                     "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
                     "downsample.norm.weight", "downsample.norm.bias", "downsample.reduction.weight", "norm.weight",
                     "norm.bias", "head.weight", "head.bias"}
    assert "layers.0.blocks.2.attn.qkv.weight" not in theirs and "layers.1.blocks.2.attn.qkv.weight" not in before


@pytest.mark.parametrize("stages", [None, [0, 1]], ids=["every stage", "stages 0 and 1"])
def test_a_supernet_step_with_activation_checkpointing_has_the_same_gradients(tiny_space, stages):
    """A sampled subnet with drop path on: the recomputed blocks draw the same drop-path masks
    (checkpoint preserves the RNG state), so every gradient is the plain step's."""
    torch.manual_seed(0)
    plain = Supernet(tiny_space, num_classes=10, drop_path_rate=0.3).train()
    checkpointed = Supernet(tiny_space, num_classes=10, drop_path_rate=0.3).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.set_grad_checkpointing(True, stages)
    assert [s.grad_checkpointing for s in checkpointed.layers] == [stages is None or i in stages for i in range(4)]
    arch = tiny_space.sample(torch.Generator().manual_seed(3))
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for model in (plain, checkpointed):
        torch.manual_seed(1)
        F.cross_entropy(model(x, arch), y).backward()
    grads = [(n, a.grad, b.grad) for (n, a), b in zip(plain.named_parameters(), checkpointed.parameters())]
    assert sum(a is not None for _, a, _ in grads) > 20
    for name, a, b in grads:
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7, msg=name)


def test_the_checkpointing_knob_reaches_the_models_and_a_bad_value_is_one_line(tmp_path):
    from hydra.utils import instantiate

    from s3.models import NetConfig
    from tests.helpers import compose_cfg

    for overrides, expected in (([], [False] * 4), (["model.net.grad_checkpointing=[0,1]"], [True, True, False, False]),
                                (["model.net.grad_checkpointing=true"], [True] * 4)):
        module = instantiate(compose_cfg(overrides, tmp_path).model)
        assert [s.grad_checkpointing for s in module.model.layers] == expected
    with pytest.raises(ValueError, match=r"model.net.grad_checkpointing='yes': must be true, false or a list"):
        NetConfig.of({"grad_checkpointing": "yes"})
    with pytest.raises(ValueError, match=r"stage 4 does not exist; the model has stages 0-3"):
        NetConfig.of({"grad_checkpointing": [4]}).checkpointed_stages(4)


def test_a_supernet_trained_with_activation_checkpointing_loads_for_the_search(tiny_space):
    """Every key of model.net is saved with the checkpoint; the ones a model is not built with
    (grad_checkpointing) must not reach the constructor."""
    from s3.models import SupernetCheckpoint

    trained = Supernet(tiny_space, num_classes=10)
    ckpt = {"hyper_parameters": {"space": tiny_space.to_dict(),
                                 "net": {"num_classes": 10, "drop_path_rate": 0.1, "head_dim": 32,
                                         "grad_checkpointing": [0, 1]}},
            "state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}, "pytorch-lightning_version": "2"}
    built = SupernetCheckpoint.read("supernet.ckpt", ckpt).build()
    arch = tiny_space.sample(torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(built.eval()(x, arch), trained.eval()(x, arch))
