"""Resource constraints of a search: [min, max] ranges of params, MACs (multiply-accumulates)
and latency in milliseconds on a named backend and batch.

Params and MACs come from the analytic model in `s3.cost`, latency from a predictor (a lookup
table timed on this machine, `s3.latency_predictor`), so a candidate is accepted or rejected before
any forward pass. Every cost grows with every dimension of the space, so the cost range of a space
is [cost(smallest), cost(largest)], which lets an impossible budget fail before any evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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


LATENCY_BACKENDS = ("pytorch", "cuda", "onnxruntime")  # where the predictor's table is timed


@dataclass(frozen=True)
class LatencyTarget:
    """Where a latency bound is measured: `backend` (pytorch: eager on the CPU; cuda; onnxruntime on
    the CPU, the exported models), `batch` images per forward pass, `threads` (None: this process's
    torch threads), `precision` (fp32, or bf16 autocast with pytorch and cuda)."""

    backend: str = "pytorch"
    batch: int = 1
    threads: int | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.backend not in LATENCY_BACKENDS:
            raise ValueError(f"constraints.latency_ms.backend={self.backend!r}: allowed {list(LATENCY_BACKENDS)}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"constraints.latency_ms.precision={self.precision!r}: allowed ['fp32', 'bf16']")
        if self.precision == "bf16" and self.backend == "onnxruntime":
            raise ValueError("constraints.latency_ms.precision=bf16 with backend=onnxruntime: the exported models "
                             "run in fp32 there; allowed: fp32, or bf16 with backend pytorch or cuda")
        for name in ("batch", "threads"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"constraints.latency_ms.{name}={v!r}: must be an integer >= 1"
                                 + (", or null for this process's threads" if name == "threads" else ""))
        if self.backend == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ValueError("constraints.latency_ms.backend=cuda: no CUDA device on this machine; "
                                 "allowed here: 'pytorch', 'onnxruntime'")


class Constraints:
    """`constraints.params.{min,max}`, `constraints.macs.{min,max}` and `constraints.latency_ms.{min,
    max, backend, batch, threads}` for one input geometry. A latency bound needs a predictor
    (`use_latency`) before any arch is priced."""

    def __init__(self, space: SearchSpace, params: Mapping | None = None, macs: Mapping | None = None,
                 latency_ms: Mapping | None = None, num_classes: int = 1000, in_chans: int = 3, head_dim: int = 32):
        self.ranges, self.latency, self.predict_latency = {}, None, None
        latency_ms = dict(latency_ms or {})
        target = {k: latency_ms.pop(k) for k in ("backend", "batch", "threads", "precision") if k in latency_ms}
        for name, bounds in (("params", params), ("macs", macs), ("latency_ms", latency_ms)):
            bounds = dict(bounds or {})
            unknown = sorted(set(bounds) - {"min", "max"})
            if unknown:
                extra = ", backend, batch, threads, precision" if name == "latency_ms" else ""
                raise ValueError(f"constraints.{name}: unknown keys {unknown}; allowed: min, max{extra}")
            values = []
            for k in ("min", "max"):
                v = bounds.get(k)
                values.append(None if v is None else _bound(f"constraints.{name}.{k}", v))
            try:
                self.ranges[name] = Range(*values)
            except ValueError as e:
                raise ValueError(f"constraints.{name}: {e}") from None
        if self.bounded("latency_ms"):
            self.latency = LatencyTarget(**target)
        else:
            del self.ranges["latency_ms"]
        self.geometry = dict(img_size=space.img_size, patch_size=space.patch_size, num_classes=num_classes,
                             in_chans=in_chans, head_dim=head_dim)

    def bounded(self, name: str) -> bool:
        r = self.ranges.get(name)
        return r is not None and (r.min is not None or r.max is not None)

    def use_latency(self, predict: Callable[[Arch], float]) -> None:
        """The predictor a latency bound prices archs with (milliseconds)."""
        self.predict_latency = predict

    def analytic_cost(self, arch: Arch) -> dict[str, int]:
        """Params and MACs: what needs no latency predictor."""
        return {"params": count_params(arch, **self.geometry), "macs": count_macs(arch, **self.geometry)}

    def analytic_satisfied(self, arch: Arch) -> bool:
        cost = self.analytic_cost(arch)
        return all(cost[k] in r for k, r in self.ranges.items() if k in cost)

    def cost(self, arch: Arch) -> dict[str, float]:
        cost = self.analytic_cost(arch)
        if self.latency is not None:
            if self.predict_latency is None:
                raise RuntimeError("constraints.latency_ms is set but no latency predictor was given (use_latency)")
            cost["latency_ms"] = round(self.predict_latency(arch), 4)
        return cost

    def violations(self, cost: Mapping[str, float]) -> list[str]:
        return [f"{k}={_human(cost[k])} outside {r}" for k, r in self.ranges.items() if cost[k] not in r]

    def satisfied(self, arch: Arch) -> bool:
        return not self.violations(self.cost(arch))

    def check_feasible(self, space: SearchSpace) -> None:
        """Raise when no architecture of `space` can meet the constraints (before any evaluation); a
        latency bound is checked once its predictor is given."""
        priced = self.cost if self.predict_latency is not None or self.latency is None else self.analytic_cost
        lo, hi = priced(space.smallest()), priced(space.largest())
        for k, r in self.ranges.items():
            if k not in lo:
                continue
            if (r.max is not None and lo[k] > r.max) or (r.min is not None and hi[k] < r.min):
                exact = f" ({lo[k]:d} to {hi[k]:d})" if isinstance(lo[k], int) else ""
                where = f", predicted at batch {self.latency.batch} on {self.latency.backend}" if k == "latency_ms" else ""
                raise ValueError(
                    f"constraints.{k}={r} cannot be met: the {k} of this space's architectures range over "
                    f"[{_human(lo[k])}, {_human(hi[k])}]{exact}{where}"
                )

    def __str__(self) -> str:
        text = ", ".join(f"{k} in {r}" for k, r in self.ranges.items() if r.min is not None or r.max is not None) or "none"
        if self.latency is not None:
            text += f" (latency at batch {self.latency.batch} on {self.latency.backend}, {self.latency.precision})"
        return text
