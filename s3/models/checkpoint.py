"""One loader for the three checkpoint formats an S3 user meets.

- the official model zoo (`S3-T.pth`...): `{'model': state_dict}` with merging layers at the end of
  stage i (`layers.{i}.downsample`) and persistent `relative_position_index` / `attn_mask` buffers;
- timm's `swin_s3_*`: merging at the start of stage i+1, head under `head.fc`;
- this project's Lightning checkpoints: `{'state_dict': {'model.<key>': ...}, ...}`.

All are converted to this project's keys (those of the official zoo, without derived buffers) and
loaded strictly: the first missing, unexpected or mis-shaped key is named, never a partial load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from s3.space import SearchSpace, space_mismatch

if TYPE_CHECKING:
    from s3.models.transformer import Supernet

DERIVED_BUFFERS = re.compile(r"(relative_position_index|attn_mask)$")
LIGHTNING_PREFIX = "model."


def read_checkpoint(path: str | Path, mmap: bool = False) -> Any:
    """`torch.load(..., weights_only=True)` with a clear error for missing or unreadable files;
    `mmap=True` maps the tensors instead of reading them (to look at a checkpoint's metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # unpickling errors come in many types
        raise ValueError(f"checkpoint {path} could not be read as a PyTorch checkpoint ({_load_error(e)}); "
                         f"weights_only=True reads only files of tensors and plain containers") from None


def _load_error(e: Exception) -> str:
    """The reason in torch.load's multi-line message (the weights-only unpickler's own line)."""
    text = str(e)
    m = re.search(r"WeightsUnpickler error:\s*(\S.*)", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(e).__name__}: {m.group(1).strip() if m else (lines[0] if lines else 'no message')}"


def checkpoint_format(obj: Any) -> str:
    """'lightning', 'official', 'timm' or 'native' (a bare state dict in this project's keys)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"a checkpoint must be a dict, got {type(obj).__name__}")
    if "state_dict" in obj and "pytorch-lightning_version" in obj:
        return "lightning"
    if "model" in obj and isinstance(obj["model"], Mapping):
        return "official"
    if "head.fc.weight" in obj or ("layers.1.downsample.reduction.weight" in obj and "layers.0.downsample.reduction.weight" not in obj):
        return "timm"
    if any(isinstance(v, Tensor) for v in obj.values()):
        return "native"
    raise ValueError(f"unrecognised checkpoint: top-level keys {sorted(obj)[:8]}")


def to_native(obj: Mapping[str, Any]) -> dict[str, Tensor]:
    """This project's state dict from any of the three formats."""
    fmt = checkpoint_format(obj)
    if fmt == "lightning":
        sd = {k[len(LIGHTNING_PREFIX):]: v for k, v in obj["state_dict"].items() if k.startswith(LIGHTNING_PREFIX)}
    elif fmt == "official":
        sd = dict(obj["model"])
    elif fmt == "timm":
        sd = {}
        for k, v in obj.items():
            m = re.match(r"layers\.(\d+)\.downsample\.(.*)", k)
            if m:  # timm merges at the start of stage i+1; we (and the zoo) at the end of stage i
                k = f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
            sd[k.replace("head.fc.", "head.")] = v
    else:
        sd = dict(obj)
    return {k: v for k, v in sd.items() if not DERIVED_BUFFERS.search(k)}


def load_state_dict(model: nn.Module, state: Mapping[str, Tensor], source: str = "checkpoint") -> nn.Module:
    """Strict load with a message naming the first mismatch and both shapes."""
    own = model.state_dict()
    for k, v in own.items():
        if k not in state:
            raise ValueError(f"{source} does not fit the model: key '{k}' (shape {tuple(v.shape)}) is missing")
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(
                f"{source} does not fit the model: key '{k}' has shape {tuple(state[k].shape)} in the checkpoint "
                f"but {tuple(v.shape)} in the model"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise ValueError(f"{source} does not fit the model: unexpected key '{extra[0]}' ({len(extra)} unexpected in all)")
    model.load_state_dict(state, strict=True)
    return model


@dataclass(frozen=True)
class SupernetCheckpoint:
    """A supernet training checkpoint of this project (what `train.py` writes for a supernet), read
    once: its space, its network settings (class count...), the search split its data held out,
    and the `Supernet` it builds. Every "is this a supernet, of which space and data?" asks here."""

    source: str
    space: SearchSpace
    net: dict
    search_split: dict | None
    raw: Mapping[str, Any] = field(repr=False)

    @staticmethod
    def holds_supernet(ckpt: Any) -> bool:
        """Whether a loaded checkpoint is a supernet's (its hyper-parameters hold the space)."""
        hp = ckpt.get("hyper_parameters") if isinstance(ckpt, Mapping) else None
        return isinstance(hp, Mapping) and "space" in hp

    @classmethod
    def read(cls, path: str | Path, ckpt: Any = None) -> SupernetCheckpoint:
        """From `path`, or from its already loaded content `ckpt`."""
        ckpt = read_checkpoint(path) if ckpt is None else ckpt
        if not cls.holds_supernet(ckpt):
            raise ValueError(f"{path} is not a supernet checkpoint of this project (no 'space' in its hyper_parameters)")
        hp = ckpt["hyper_parameters"]
        split = next((v["search_split"] for v in ckpt.values() if isinstance(v, Mapping) and "search_split" in v), None)
        return cls(str(path), SearchSpace.from_dict(hp["space"]), dict(hp["net"]), split, ckpt)

    @property
    def num_classes(self) -> int:
        return int(self.net["num_classes"])

    def check(self, what: str, space: SearchSpace | None = None, num_classes: int | None = None) -> SupernetCheckpoint:
        """Raise unless it was trained on a space holding `space` and for `num_classes` classes;
        `what` names the setting in the message (e.g. `supernet=...`, `init_from=...`)."""
        bad = space_mismatch(space, self.space) if space is not None else []
        if bad:
            raise ValueError(f"{what}={self.source} was trained on another space than the requested one: " + "; ".join(bad))
        if num_classes is not None and self.num_classes != num_classes:
            raise ValueError(f"{what}={self.source} has {self.num_classes} classes, this run's data {num_classes}")
        return self

    def build(self) -> Supernet:
        """The trained supernet (weights only)."""
        from s3.models.net import NetConfig
        from s3.models.transformer import Supernet

        net = NetConfig.of({k: v for k, v in self.net.items() if k not in ("img_size", "patch_size")})
        return load_state_dict(Supernet(self.space, **net.model_kwargs()), to_native(self.raw),
                               source=f"supernet checkpoint {self.source}")


def load_supernet(path: str | Path) -> Supernet:
    """The trained `Supernet` of a supernet checkpoint file."""
    return SupernetCheckpoint.read(path).build()


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an official-zoo, timm or Lightning checkpoint into `model` (strict, weights only)."""
    return load_state_dict(model, to_native(read_checkpoint(path)), source=f"checkpoint {path}")
