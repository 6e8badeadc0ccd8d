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


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Options:
    """A dataclass of options whose defaults define each option's kind (a flag, an integer, a
    number, a tuple of numbers in [0, 1)); `POSITIVE` ones must be > 0, every other number >= 0."""

    GROUP: ClassVar[str] = ""
    POSITIVE: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            self._check(f.name, getattr(self, f.name), default)

    def _check(self, name: str, value, default) -> None:
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, tuple):
            ok = isinstance(value, (tuple, list)) and len(value) == len(default) and all(
                _number(v) and 0 <= v < 1 for v in value)
            kind = f"{len(default)} numbers in [0, 1)"
        else:
            positive, integer = name in self.POSITIVE, isinstance(default, int)
            ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else _number(value)
            ok = ok and (value > 0 if positive else value >= 0)
            kind = f"{'an integer' if integer else 'a number'} {('>= 1' if integer else '> 0') if positive else '>= 0'}"
        if not ok:
            raise ValueError(f"model.{self.GROUP}.{name}={value!r}: must be {kind}")

    @classmethod
    def of(cls, given: Mapping | Options | None):
        """The options from `model.<GROUP>` (a mapping, possibly partial) or as they are."""
        if isinstance(given, cls):
            return given
        given = dict(OmegaConf.to_container(given, resolve=True) if OmegaConf.is_config(given) else given or {})
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = set(given) - set(allowed)
        if unknown:
            raise ValueError(f"model.{cls.GROUP}: unknown keys {sorted(unknown)}; allowed {sorted(allowed)}")
        return cls(**given)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
            isinstance(b, Mapping) and set(b) <= {"min", "max"} and all(v is None or _number(v) for v in b.values())
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
