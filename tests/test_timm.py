"""The S3 family through timm's `create_model`: the released geometry, an exported model, and
what timm's users rely on (a new head, feature maps for dense tasks, grad checkpointing)."""

from __future__ import annotations

import pytest
import timm
import torch

import s3
from s3.export import export_model
from s3.models import S3Transformer
from s3.models.zoo import released_arch
from s3.space import Arch

TINY = Arch.create([2, 2, 2, 2], [32, 64, 96, 128], [2.0, 3.0, 4.0, 2.0], [1, 2, 3, 4], [[4, 4], [2, 1], [2, 2], [2, 1]])


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    model = S3Transformer(TINY, img_size=32, patch_size=2, num_classes=10).eval()
    export_model(model, tmp_path / "model", {"input_size": [3, 32, 32], "mean": [0.286] * 3, "std": [0.353] * 3,
                                              "crop_pct": 1.0, "interpolation": "none"}, "test")
    return tmp_path / "model"


def test_an_exported_model_loads_through_timm_with_its_logits_and_preprocessing(exported):
    model = timm.create_model("s3_transformer", pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(exported / "model.safetensors"))).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), s3.from_pretrained(exported).eval()(x))
    data_cfg = timm.data.resolve_data_config({}, model=model)
    assert data_cfg["input_size"] == (3, 32, 32) and data_cfg["mean"] == pytest.approx((0.286,) * 3)
    assert model.arch == TINY and model.num_classes == 10


def test_num_classes_gives_a_new_head_and_keeps_every_other_weight(exported):
    torch.manual_seed(1)
    file = str(exported / "model.safetensors")
    five = timm.create_model("s3_transformer", pretrained=True, num_classes=5, pretrained_cfg_overlay=dict(file=file)).eval()
    ten = s3.from_pretrained(exported).eval()
    assert five.head.weight.shape == (5, 128) and five.num_classes == 5
    same = {k: v for k, v in ten.state_dict().items() if not k.startswith("head.")}
    assert all(torch.equal(five.state_dict()[k], v) for k, v in same.items())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the features are the exported model's, the head is new
        torch.testing.assert_close(five.forward_head(five.forward_features(x), pre_logits=True),
                                   ten.forward_head(ten.forward_features(x), pre_logits=True), rtol=0, atol=0)


def test_features_only_gives_each_stage_s_map_at_its_stride_as_timm_s_swin_does():
    features = timm.create_model("s3_tiny", features_only=True)
    maps = features(torch.randn(1, 3, 224, 224))
    assert [tuple(m.shape) for m in maps] == [(1, 96, 56, 56), (1, 192, 28, 28), (1, 384, 14, 14), (1, 768, 7, 7)]
    assert features.feature_info.reduction() == [4, 8, 16, 32]
    assert features.feature_info.channels() == [96, 192, 384, 768]
    picked = timm.create_model("s3_tiny", features_only=True, out_indices=(1, 3))
    assert [m.shape[1] for m in picked(torch.randn(1, 3, 224, 224))] == [192, 768]


def test_the_stage_maps_are_the_model_s_own_activations():
    """forward_intermediates' last map, normed and pooled, is what the head sees."""
    torch.manual_seed(0)
    model = S3Transformer(TINY, img_size=32, patch_size=2, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x, norm=True, output_fmt="NHWC")
        assert [tuple(m.shape) for m in maps] == [(2, 16, 16, 32), (2, 8, 8, 64), (2, 4, 4, 96), (2, 2, 2, 128)]
        torch.testing.assert_close(maps[-1], final, rtol=0, atol=0)
        torch.testing.assert_close(model.forward_head(final), model(x), rtol=0, atol=0)
        assert torch.equal(model.forward_features(x), final)


def test_released_geometry_has_the_official_parameter_counts():
    with torch.device("meta"):  # (no memory, no init: and timm's meta-device builds work)
        counts = {name: sum(p.numel() for p in timm.create_model(name).parameters())
                  for name in ("s3_tiny", "s3_small", "s3_base")}
    assert counts == {"s3_tiny": 28_328_674, "s3_small": 49_737_298, "s3_base": 71_125_762}
    assert timm.create_model("s3_tiny").arch == released_arch("s3_tiny")


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = S3Transformer(TINY, img_size=32, patch_size=2, num_classes=10, drop_path_rate=0.0)
    checkpointed = S3Transformer(TINY, img_size=32, patch_size=2, num_classes=10, drop_path_rate=0.0)
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.set_grad_checkpointing(True)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for model in (plain, checkpointed):
        torch.nn.functional.cross_entropy(model(x), y).backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)
    assert all(stage.grad_checkpointing for stage in checkpointed.layers)


def test_s3_tiny_pretrained_loads_the_authors_checkpoint_format(tmp_path):
    """The model zoo's file ({'model': state dict} with timm's Swin keys and buffers) through
    `pretrained_cfg_overlay=dict(file=...)`: the logits of timm's own swin_s3_tiny_224."""
    from s3.models.checkpoint import to_native

    reference = timm.create_model("swin_s3_tiny_224").eval()
    sd = to_native(reference.state_dict())
    sd["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    torch.save({"model": sd, "epoch": 299}, tmp_path / "S3-T.pth")
    model = timm.create_model("s3_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "S3-T.pth")))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference(x), atol=1e-4, rtol=0)
