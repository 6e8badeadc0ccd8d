"""E-T Error of a space and the per-dimension analysis that drives space evolution (S3 sections 3-4).

Q_e is the mean top-1 error of architectures sampled under the constraint, Q_t the mean error of
the best K of them, Q = (Q_e + Q_t) / 2. For one (stage, dimension) the pool is
split by the choice it took there: a stage dimension by its value, a block dimension over the archs
that pinned it (`s3.search.pool`), by the one value all blocks of the stage take. A line fitted to
the E-T Error of each choice says in which direction that dimension should move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from s3.search.pool import PooledArch
from s3.space import BLOCK_DIMENSIONS, DIMENSIONS, SearchSpace


@dataclass(frozen=True)
class ETError:
    q_e: float
    q_t: float
    n: int
    k: int

    @property
    def q(self) -> float:
        return (self.q_e + self.q_t) / 2

    def to_dict(self) -> dict:
        return {**asdict(self), "q": self.q}


def et_error(errors: Sequence[float], top_k: int) -> ETError:
    """E-T Error of a pool of top-1 errors; the top tier is the `top_k` lowest errors."""
    if not errors:
        raise ValueError("E-T Error of an empty pool: no architecture was sampled")
    if top_k < 1:
        raise ValueError(f"search.top_k={top_k}: must be >= 1")
    e = sorted(errors)
    k = min(top_k, len(e))
    return ETError(float(np.mean(e)), float(np.mean(e[:k])), len(e), k)


@dataclass(frozen=True)
class DimensionFit:
    """E-T Error per choice of one (stage, dimension) and the fitted line Q ~ slope * value + b."""

    stage: int
    dimension: str
    choices: tuple
    per_choice: tuple[ETError | None, ...]
    slope: float | None

    @property
    def change(self) -> float:
        """Fitted change of Q across the choice range (negative: error falls as the value grows)."""
        if self.slope is None:
            return 0.0
        return self.slope * (max(self.choices) - min(self.choices))

    def rows(self) -> list[dict]:
        return [
            {"stage": self.stage, "dimension": self.dimension, "choice": c,
             **({"n": e.n, "k": e.k, "q_e": e.q_e, "q_t": e.q_t, "q": e.q} if e else
                {"n": 0, "k": 0, "q_e": None, "q_t": None, "q": None}),
             "slope": self.slope, "change": self.change}
            for c, e in zip(self.choices, self.per_choice)
        ]


def fit_dimensions(space: SearchSpace, pool: Sequence[PooledArch], errors: Sequence[float],
                   top_k: int) -> list[DimensionFit]:
    """Per (stage, dimension): E-T Error of every choice and the least-squares slope over choices.
    The top tier of a choice is scaled to its share of the pool: k = max(1, round(K * n / N))."""
    fits = []
    for s, stage in enumerate(space.stages):
        for dim in DIMENSIONS:
            choices = stage.choices(dim)
            groups: dict = {c: [] for c in choices}
            for member, err in zip(pool, errors):
                if dim not in BLOCK_DIMENSIONS or (s, dim) in member.pinned:
                    groups[member.arch.values(s, dim)[0]].append(err)
            per_choice = tuple(
                et_error(g, max(1, round(top_k * len(g) / len(pool)))) if g else None for g in groups.values()
            )
            xs = [c for c, e in zip(choices, per_choice) if e is not None]
            ys = [e.q for e in per_choice if e is not None]
            slope = float(np.polyfit(xs, ys, 1)[0]) if len(xs) >= 2 else None
            fits.append(DimensionFit(s, dim, choices, per_choice, slope))
    return fits
