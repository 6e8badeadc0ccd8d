"""The S3 family in timm's model registry (registered when `s3` is imported):

- `timm.create_model("s3_tiny" | "s3_small" | "s3_base")`: the released S3-T/S/B architectures;
  `pretrained=True, pretrained_cfg_overlay=dict(file="S3-T.pth")` loads the authors' checkpoint
  (its zoo keys are translated, as `s3.models.load_checkpoint` does).
- `timm.create_model("s3_transformer", pretrained=True,
  pretrained_cfg_overlay=dict(file="<export>/model.safetensors"))`: a model export.py wrote (its
  arch, geometry and preprocessing are read from the `config.json` beside the weights); or any
  arch with `arch=` (an `Arch`, its dict in the official schema, or an arch YAML).

What timm's users rely on works: `num_classes=` (a new head, the pretrained one dropped),
`features_only=True` with `out_indices` (the stages' feature maps, NCHW, strides 4/8/16/32 at
patch 4), `forward_features` / `forward_head`, `set_grad_checkpointing`.
"""

from __future__ import annotations

import json
from pathlib import Path

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from s3.models.checkpoint import to_native
from s3.models.transformer import S3Transformer
from s3.space import Arch

# The released models (S3-METHOD.md section 1): depths and windows; embed dims 96-768, heads 3-24.
RELEASED = {"s3_tiny": ([2, 2, 6, 2], [7, 7, 14, 7]), "s3_small": ([2, 2, 18, 2], [14, 14, 14, 14]),
            "s3_base": ([2, 2, 30, 2], [7, 7, 14, 7])}


def released_arch(name: str) -> Arch:
    depths, windows = RELEASED[name]
    return Arch.create(depths, [96, 192, 384, 768], [4.0] * 4, [3, 6, 12, 24], windows)


def _cfg(**kwargs) -> dict:
    return {"url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": None, "crop_pct": 0.9,
            "interpolation": "bicubic", "fixed_input_size": True, "mean": IMAGENET_DEFAULT_MEAN,
            "std": IMAGENET_DEFAULT_STD, "first_conv": "patch_embed.proj", "classifier": "head", **kwargs}


default_cfgs = generate_default_cfgs({f"{name}.untrained": _cfg() for name in (*RELEASED, "s3_transformer")})


def _filter(state_dict: dict, model: S3Transformer) -> dict:
    """Any checkpoint format this project reads (zoo, timm, Lightning) -> the model's own keys."""
    return to_native(state_dict)


def _exported(kwargs: dict) -> dict:
    """The `config.json` export.py wrote beside the weights named in `pretrained_cfg_overlay`."""
    file = (kwargs.get("pretrained_cfg_overlay") or {}).get("file")
    config = Path(file).parent / "config.json" if file else None
    return json.loads(config.read_text()) if config is not None and config.is_file() else {}


def _square(cls):
    """timm hands the model its pretrained config's `img_size` as (H, W): S3 models are square."""
    def build(img_size=224, **kwargs):
        if isinstance(img_size, (tuple, list)):
            if len(set(img_size)) != 1:
                raise ValueError(f"img_size={tuple(img_size)}: S3 models take square images")
            img_size = img_size[0]
        return cls(img_size=int(img_size), **kwargs)

    return build


def _create(variant: str, arch: Arch, pretrained: bool, **kwargs) -> S3Transformer:
    return build_model_with_cfg(_square(S3Transformer), variant, pretrained, arch=arch, pretrained_filter_fn=_filter,
                                feature_cfg={"feature_cls": "getter", "out_indices": (0, 1, 2, 3), "prune": False},
                                **kwargs)


@register_model
def s3_tiny(pretrained: bool = False, **kwargs) -> S3Transformer:
    return _create("s3_tiny", released_arch("s3_tiny"), pretrained, **kwargs)


@register_model
def s3_small(pretrained: bool = False, **kwargs) -> S3Transformer:
    return _create("s3_small", released_arch("s3_small"), pretrained, **kwargs)


@register_model
def s3_base(pretrained: bool = False, **kwargs) -> S3Transformer:
    return _create("s3_base", released_arch("s3_base"), pretrained, **kwargs)


@register_model
def s3_transformer(pretrained: bool = False, arch: Arch | dict | str | Path | None = None, **kwargs) -> S3Transformer:
    exported = _exported(kwargs)
    if arch is None:
        if "arch" not in exported:
            raise ValueError("s3_transformer: give arch= (an Arch, its dict or an arch YAML), or "
                             "pretrained_cfg_overlay=dict(file=<export>/model.safetensors) beside export.py's config.json")
        arch = exported["arch"]
    arch = arch if isinstance(arch, Arch) else Arch.from_dict(arch) if isinstance(arch, dict) else Arch.from_yaml(arch)
    net = exported.get("net", {})
    for key in ("img_size", "patch_size", "head_dim", "in_chans"):
        if key in net:
            kwargs.setdefault(key, net[key])
    if "num_classes" in net:
        overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
        pre = exported.get("preprocessing") or {}
        overlay.setdefault("num_classes", net["num_classes"])  # the saved head's size: another num_classes= drops it
        for key in ("input_size", "mean", "std", "crop_pct", "interpolation"):
            if key in pre and pre[key] != "none":
                overlay.setdefault(key, tuple(pre[key]) if isinstance(pre[key], list) else pre[key])
        kwargs["pretrained_cfg_overlay"] = overlay
        kwargs.setdefault("num_classes", net["num_classes"])
    return _create("s3_transformer", arch, pretrained, **kwargs)
