"""The space update of one S3 iteration: move a dimension's choice list one step towards lower
E-T Error when its fitted change exceeds a threshold, keeping the count and the legal bounds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from s3.search.et_error import DimensionFit
from s3.space import SearchSpace


def window_ladder(resolution: int) -> list[int]:
    """Legal windows of a stage in order: divisors of its grid, then the grid itself (global)."""
    return [w for w in range(1, resolution + 1) if resolution % w == 0]


def _step(choices: Sequence) -> float:
    """The step of an arithmetic list; the smallest gap when the list is not arithmetic."""
    gaps = [b - a for a, b in zip(choices, choices[1:])]
    return min(gaps)


def shifted(space: SearchSpace, stage: int, dimension: str, direction: int) -> tuple | None:
    """The choice list moved one step up (+1) or down (-1), or None when that leaves the legal range.
    Windows move along the ladder of legal windows of the stage instead of by a fixed step."""
    choices = space.stages[stage].choices(dimension)
    if len(choices) < 2:
        return None
    if dimension == "window_size":
        ladder = window_ladder(space.resolutions[stage])
        idx = [ladder.index(min(w, ladder[-1])) + direction for w in choices]
        if min(idx) < 0 or max(idx) >= len(ladder) or len(set(idx)) != len(idx):
            return None
        return tuple(ladder[i] for i in idx)
    step = _step(choices) * direction
    if dimension == "mlp_ratio":
        new = tuple(round(c + step, 6) for c in choices)
        return new if min(new) > 0 else None
    new = tuple(int(c + step) for c in choices)
    return new if min(new) >= 1 else None


@dataclass(frozen=True)
class Decision:
    stage: int
    dimension: str
    change: float
    action: str  # up | down | flat | at_bound | single_choice
    old: tuple
    new: tuple

    @property
    def moved(self) -> bool:
        return self.new != self.old


def evolve_space(space: SearchSpace, fits: Sequence[DimensionFit], threshold: float) -> tuple[SearchSpace, list[Decision]]:
    """Apply every dimension's decision (computed on the same, current space)."""
    decisions, new_space = [], space
    for f in fits:
        old = space.stages[f.stage].choices(f.dimension)
        if f.slope is None:
            action, new = "single_choice", old
        elif abs(f.change) <= threshold:
            action, new = "flat", old
        else:
            direction = -1 if f.slope > 0 else 1  # towards lower error
            moved = shifted(space, f.stage, f.dimension, direction)
            action, new = ("up" if direction > 0 else "down", moved) if moved else ("at_bound", old)
        decisions.append(Decision(f.stage, f.dimension, f.change, action, old, tuple(new)))
        if new != old:
            new_space = new_space.replace(f.stage, f.dimension, new)
    return new_space, decisions
