"""The training recipe's options as dataclasses, the one source of their defaults: `model.optim`
(`conf/model/optim/`), `model.loss` (`conf/model/loss/`) and the supernet's `model.sampling`
(`conf/model/sampling/`) extend nodes built from them, and the modules build them from what they
are given, so a module built in code and one composed by Hydra train with the same recipe.

The nodes are registered untyped: a value of the wrong kind or sign, or an unknown key, reaches
`__post_init__` and gets the entry points' one-line error (exit 2) naming the field, instead of a
Hydra composition traceback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from s3.options import Options, is_number


@dataclass
class OptimConfig(Options):
    """AdamW, lr scaled by global batch / base_batch, linear warmup then cosine per step (DeiT,
    AutoFormer); no decay on norms, biases and bias tables."""

    lr: float = 5e-4            # at base_batch images per step
    base_batch: int = 512
    weight_decay: float = 0.05
    warmup_epochs: float = 5.0  # supernets; the retraining recipe (conf/model/standalone.yaml) warms up for 20
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    GROUP: ClassVar[str] = "optim"
    POSITIVE: ClassVar[frozenset[str]] = frozenset({"lr", "base_batch", "eps"})


@dataclass
class LossConfig(Options):
    """timm's Mixup / CutMix with SoftTargetCrossEntropy; with both off, label-smoothed CE."""

    mixup: float = 0.8
    cutmix: float = 1.0
    label_smoothing: float = 0.1

    GROUP: ClassVar[str] = "loss"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label_smoothing >= 1:
            raise ValueError(f"model.loss.label_smoothing={self.label_smoothing}: must be in [0, 1)")


def _no_bounds() -> dict:
    return {"params": {"min": None, "max": None}, "macs": {"min": None, "max": None}}


@dataclass
class SamplingConfig(Options):
    """The subnets of a supernet training step: `subnets_per_step` (the mean loss of several before
    one optimizer step, the paper's fused gradients), `sandwich` (largest + smallest +
    `subnets_per_step` random), `distill` (with `sandwich`: in-place distillation from the largest)
    and `constraints` (`{params, macs}: {min, max}` as `conf/constraints/`: every random subnet is
    redrawn from its own seeded generator until it meets them, so training sees only the budget band;
    all null: no restriction)."""

    subnets_per_step: int = 1
    sandwich: bool = False
    distill: bool = False
    constraints: dict = dataclasses.field(default_factory=_no_bounds)

    GROUP: ClassVar[str] = "sampling"
    POSITIVE: ClassVar[frozenset[str]] = frozenset({"subnets_per_step"})

    def _check(self, name: str, value, default) -> None:
        if name != "constraints":
            return super()._check(name, value, default)
        ok = isinstance(value, Mapping) and set(value) <= {"params", "macs"} and all(
            isinstance(b, Mapping) and set(b) <= {"min", "max"} and all(v is None or is_number(v) for v in b.values())
            for b in value.values() if b is not None)
        if not ok:
            raise ValueError(f"model.sampling.constraints={value!r}: must be {{params, macs}}: {{min, max}} "
                             "with numbers or null")

    @property
    def bounded(self) -> bool:
        """Whether `constraints` restricts anything."""
        return any(v is not None for b in self.constraints.values() if b for v in b.values())

    def __post_init__(self) -> None:
        super().__post_init__()
        self.constraints = {k: dict(b or {}) for k, b in self.constraints.items()}
        if self.distill and not self.sandwich:
            raise ValueError("model.sampling.distill=true: needs model.sampling.sandwich=true (the largest subnet is "
                             "the teacher)")


RECIPE = {"optim": ("adamw", OptimConfig), "loss": ("mixup", LossConfig), "sampling": ("uniform", SamplingConfig)}


def register_recipe_defaults() -> None:
    """`conf/model/<group>/<option>.yaml` extends `base_<option>`: the dataclass's defaults."""
    store = ConfigStore.instance()
    for group, (option, options) in RECIPE.items():
        store.store(group=f"model/{group}", name=f"base_{option}", node=OmegaConf.create(options().to_dict()))
