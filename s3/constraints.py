"""Resource constraints of a search: [min, max] ranges of params and/or MACs (multiply-accumulates).

Costs come from the analytic model in `s3.cost`, so a candidate is accepted or rejected before
any forward pass. Both costs grow with every dimension of the space, so the cost range of a space
is [cost(smallest), cost(largest)], which lets an impossible budget fail before any evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from s3.cost import count_macs, count_params
from s3.space import Arch, SearchSpace


def _human(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def _bound(key: str, value) -> float:
    """A finite number; YAML 1.1 reads `7.5e5` (no sign in the exponent) as a string, so numeric text counts."""
    try:
        number = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number):
        raise ValueError(f"{key}={value!r}: must be a finite number >= 0, or null for no bound")
    return number


@dataclass(frozen=True)
class Range:
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min={self.min:g} > max={self.max:g}")

    def __contains__(self, v: float) -> bool:
        return (self.min is None or v >= self.min) and (self.max is None or v <= self.max)

    def __str__(self) -> str:
        lo = "-inf" if self.min is None else _human(self.min)
        hi = "inf" if self.max is None else _human(self.max)
        return f"[{lo}, {hi}]"


class Constraints:
    """`constraints.params.{min,max}` and `constraints.macs.{min,max}` for one input geometry."""

    def __init__(self, space: SearchSpace, params: Mapping | None = None, macs: Mapping | None = None,
                 num_classes: int = 1000, in_chans: int = 3, head_dim: int = 32):
        self.ranges = {}
        for name, bounds in (("params", params), ("macs", macs)):
            bounds = dict(bounds or {})
            unknown = sorted(set(bounds) - {"min", "max"})
            if unknown:
                raise ValueError(f"constraints.{name}: unknown keys {unknown}; allowed: min, max")
            values = []
            for k in ("min", "max"):
                v = bounds.get(k)
                values.append(None if v is None else _bound(f"constraints.{name}.{k}", v))
            try:
                self.ranges[name] = Range(*values)
            except ValueError as e:
                raise ValueError(f"constraints.{name}: {e}") from None
        self.geometry = dict(img_size=space.img_size, patch_size=space.patch_size, num_classes=num_classes,
                             in_chans=in_chans, head_dim=head_dim)

    def cost(self, arch: Arch) -> dict[str, int]:
        return {"params": count_params(arch, **self.geometry), "macs": count_macs(arch, **self.geometry)}

    def violations(self, cost: Mapping[str, float]) -> list[str]:
        return [f"{k}={_human(cost[k])} outside {r}" for k, r in self.ranges.items() if cost[k] not in r]

    def satisfied(self, arch: Arch) -> bool:
        return not self.violations(self.cost(arch))

    def check_feasible(self, space: SearchSpace) -> None:
        """Raise when no architecture of `space` can meet the constraints (before any evaluation)."""
        lo, hi = self.cost(space.smallest()), self.cost(space.largest())
        for k, r in self.ranges.items():
            if (r.max is not None and lo[k] > r.max) or (r.min is not None and hi[k] < r.min):
                raise ValueError(
                    f"constraints.{k}={r} cannot be met: the {k} of this space's architectures range over "
                    f"[{_human(lo[k])}, {_human(hi[k])}] ({lo[k]:d} to {hi[k]:d})"
                )

    def __str__(self) -> str:
        return ", ".join(f"{k} in {r}" for k, r in self.ranges.items() if r.min is not None or r.max is not None) or "none"
