"""The space update of one S3 iteration: move a dimension's choice list one step towards lower
E-T Error when the move rule says its fitted change is real, keeping the count and the legal
bounds, and reverting alone any move that leaves the constraints unmeetable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from s3.search.et_error import DimensionFit
from s3.search.significance import MOVE_RULES, ChangeTest
from s3.space import SearchSpace


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
        ladder = space.geometry.legal_windows(stage)
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
class MoveRule:
    """When a dimension moves. `threshold` (the paper's rule): its fitted change across the choices
    exceeds `threshold` error points. `significant` (the default): that, and the change is
    significant at family-wise error `alpha` over the iteration's dimensions (Holm; `significance`)."""

    rule: str = "significant"
    threshold: float = 0.5
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.rule not in MOVE_RULES:
            raise ValueError(f"search.move_rule={self.rule}: allowed {list(MOVE_RULES)}")
        if self.threshold < 0:
            raise ValueError(f"search.threshold={self.threshold}: must be >= 0 (error points across a choice range)")
        if not 0 < self.alpha < 1:
            raise ValueError(f"search.alpha={self.alpha}: the family-wise error of one iteration, in (0, 1)")

    def verdict(self, change: float, p_adjusted: float) -> str | None:
        """None when the rule moves the dimension, else why not."""
        if abs(change) <= self.threshold:
            return "below_threshold"
        if self.rule == "significant" and not p_adjusted < self.alpha:
            return "not_significant"
        return None

    def deciding(self, space: SearchSpace, keys: Sequence[tuple[int, str]]):
        """`decide(changes, p_adjusted) -> moved` for `significance.moves_under_null`, bounds included."""
        can = np.array([[shifted(space, s, dim, d) is not None for d in (-1, 1)] for s, dim in keys]).reshape(-1, 2)

        def decide(change: np.ndarray, p_adjusted: np.ndarray) -> np.ndarray:
            ok = np.array([self.verdict(c, p) is None if not np.isnan(c) else False
                           for c, p in zip(change, p_adjusted)], dtype=bool)
            up = change < 0  # error falls as the value grows
            return ok & np.where(up, can[:, 1], can[:, 0])

        return decide


REASONS = {
    "up": "moved up", "down": "moved down", "below_threshold": "change within the threshold",
    "not_significant": "change not significant at search.alpha (or a choice has only 1-2 archs)",
    "at_bound": "at a bound of the legal range", "single_choice": "a single choice",
    "infeasible": "the constraints could not be met",
    "unconfirmed": "the second supernet (search.confirm) did not make the same move",
}


@dataclass(frozen=True)
class Decision:
    stage: int
    dimension: str
    change: float
    action: str  # up | down | below_threshold | not_significant | at_bound | single_choice | infeasible | unconfirmed
    old: tuple
    new: tuple
    test: ChangeTest | None = None

    @property
    def moved(self) -> bool:
        return self.new != self.old

    @property
    def reason(self) -> str:
        return REASONS[self.action]

    def to_dict(self) -> dict:
        out = {"stage": self.stage, "dimension": self.dimension, "change": self.change, "action": self.action,
               "reason": self.reason, "old": list(self.old), "new": list(self.new)}
        if self.test is not None:
            out.update({k: v for k, v in self.test.to_dict().items() if k not in ("stage", "dimension", "change")})
        return out


def evolve_space(space: SearchSpace, fits: Sequence[DimensionFit], rule: MoveRule,
                 tests: Sequence[ChangeTest] = ()) -> tuple[SearchSpace, list[Decision]]:
    """Every dimension's decision (computed on the same, current space) and the space with them all."""
    by_key = {(t.stage, t.dimension): t for t in tests}
    if rule.rule == "significant" and any(f.slope is not None and (f.stage, f.dimension) not in by_key for f in fits):
        raise ValueError("move_rule=significant needs the change tests of every fitted dimension")
    decisions, new_space = [], space
    for f in fits:
        old = space.stages[f.stage].choices(f.dimension)
        test = by_key.get((f.stage, f.dimension))
        if f.slope is None:
            action, new = "single_choice", old
        elif (why := rule.verdict(f.change, test.p_adjusted if test else 0.0)) is not None:
            action, new = why, old
        else:
            direction = -1 if f.slope > 0 else 1  # towards lower error
            moved = shifted(space, f.stage, f.dimension, direction)
            action, new = ("up" if direction > 0 else "down", moved) if moved else ("at_bound", old)
        decisions.append(Decision(f.stage, f.dimension, f.change, action, old, tuple(new), test))
        if new != old:
            new_space = new_space.replace(f.stage, f.dimension, new)
    return new_space, decisions


def confirmed(decisions: Sequence[Decision], second: Sequence[Decision]) -> list[Decision]:
    """`decisions` with a move kept only where `second` (the same space's decisions on a second
    supernet, the same pool) made the same move: a move one supernet's training noise makes alone
    does not replicate (bench/README.md, "Do the space moves replicate?")."""
    other = {(d.stage, d.dimension): d for d in second}
    return [d if not d.moved or other[(d.stage, d.dimension)].new == d.new
            else replace(d, new=d.old, action="unconfirmed") for d in decisions]


def keep_feasible(space: SearchSpace, decisions: Sequence[Decision],
                  feasible: Callable[[SearchSpace], bool]) -> tuple[SearchSpace, list[Decision]]:
    """The moves applied one at a time, the best supported first (smallest adjusted p, then largest
    change); a move after which the constraints can no longer be met is reverted alone and marked
    `infeasible`, so one infeasible shift does not cancel the others."""
    moves = sorted((d for d in decisions if d.moved),
                   key=lambda d: (d.test.p_adjusted if d.test else 0.0, -abs(d.change)))
    new_space, reverted = space, set()
    for d in moves:
        candidate = new_space.replace(d.stage, d.dimension, d.new)
        if feasible(candidate):
            new_space = candidate
        else:
            reverted.add((d.stage, d.dimension))
    return new_space, [replace(d, new=d.old, action="infeasible") if (d.stage, d.dimension) in reverted else d
                       for d in decisions]
