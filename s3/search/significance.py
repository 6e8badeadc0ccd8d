"""How sure a space-search iteration is of each fitted change: the noise model of the move rule.

S3 moves a dimension when the fitted change of its E-T Error across the choices exceeds a
threshold; at the pool sizes a search can afford that change is mostly noise (a block dimension's
choice is judged on a dozen archs, its top tier on one or two). This module gives every fitted
change an uncertainty from the pool itself:

- a bootstrap over the pool's archs: resample the archs with replacement, recompute every choice's
  E-T Error with the same top-tier rule (k = max(1, round(K n / N))) and the fitted line; the spread
  of the resampled changes is the change's standard error, its 2.5 / 97.5 % quantiles the interval;
- a two-sided p-value of z = change / SE (the normal approximation: a percentile p-value from B
  resamples could never fall below 2 / B, too coarse for a Holm correction over 20 dimensions);
  a dimension with 1 to MIN_ARCHS - 1 archs behind one of its choices is not tested (p = 1);
- Holm's step-down correction over all dimensions tested in one iteration (family-wise error
  `alpha`), so that a pure-noise pool moves a dimension with probability at most about `alpha`;
- a permutation null: the errors shuffled across the pool's archs (no dimension matters, every
  arch keeps its pins), the whole rule re-run, the moves counted. It checks the calibration of
  the bootstrap (which is approximate for a top tier of one or two archs) on the pool as drawn.

Everything is vectorised over resamples with numpy: one sort of a (resamples x N) matrix serves
every dimension, so an iteration's analysis takes seconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from s3.search.pool import PooledArch
from s3.space import BLOCK_DIMENSIONS, DIMENSIONS, SearchSpace

MOVE_RULES = ("significant", "threshold")
MIN_ARCHS = 3  # a change is tested only when every choice has this many archs: a bootstrap of one or two
               # archs per choice is degenerate (a single arch resamples to itself: zero spread)


@dataclass(frozen=True)
class Grouping:
    """Which choice every arch of the pool counts for, per testable (stage, dimension): -1 for an
    arch that does not (a block dimension it did not pin)."""

    keys: tuple[tuple[int, str], ...]
    labels: np.ndarray  # (dims, N) int: index of the arch's choice, or -1
    values: tuple[np.ndarray, ...]  # per dim: the choice values

    @classmethod
    def of(cls, space: SearchSpace, pool: Sequence[PooledArch]) -> Grouping:
        keys, labels, values = [], [], []
        for s, stage in enumerate(space.stages):
            for dim in DIMENSIONS:
                choices = stage.choices(dim)
                if len(choices) < 2:
                    continue
                index = {c: j for j, c in enumerate(choices)}
                row = [index[m.arch.values(s, dim)[0]] if dim not in BLOCK_DIMENSIONS or (s, dim) in m.pinned else -1
                       for m in pool]
                keys.append((s, dim))
                labels.append(row)
                values.append(np.asarray(choices, dtype=float))
        return cls(tuple(keys), np.asarray(labels, dtype=np.int64).reshape(len(keys), len(pool)), tuple(values))


def _changes(errors: np.ndarray, labels: np.ndarray, values: Sequence[np.ndarray], top_k: int) -> tuple:
    """Fitted changes for every row of `errors` (R, N) whose archs carry `labels` (R, dims, N), or
    (dims, N) for all rows: (changes (R, dims), and per dim the archs behind each choice and every
    choice's E-T Error, each (R, choices))."""
    R, N = errors.shape
    order = np.argsort(errors, axis=1, kind="stable")
    sorted_errors = np.take_along_axis(errors, order, axis=1)
    rows = np.arange(R)
    changes = np.full((R, len(values)), np.nan)
    counts, per_choice = [], []
    for d, x in enumerate(values):
        lab = labels[:, d, :] if labels.ndim == 3 else np.broadcast_to(labels[d], (R, N))
        lab_sorted = np.take_along_axis(lab, order, axis=1)
        q = np.full((R, len(x)), np.nan)
        n_all = []
        for j in range(len(x)):
            member = lab_sorted == j
            cum = np.cumsum(member, axis=1)
            n = cum[:, -1]
            n_all.append(n)
            k = np.maximum(1, np.rint(top_k * n / N)).astype(np.int64)
            picked = np.where(member, sorted_errors, 0.0)
            csum = np.cumsum(picked, axis=1)
            at_k = np.argmax(cum >= k[:, None], axis=1)  # the k-th member in ascending error
            ok = n > 0
            q_e = np.where(ok, csum[:, -1] / np.maximum(n, 1), np.nan)
            q_t = np.where(ok, csum[rows, at_k] / k, np.nan)
            q[:, j] = (q_e + q_t) / 2
        counts.append(np.stack(n_all, axis=1))
        per_choice.append(q)
        w = ~np.isnan(q)
        y = np.where(w, q, 0.0)
        sw = w.sum(1)
        xm = (w * x).sum(1) / np.maximum(sw, 1)
        ym = y.sum(1) / np.maximum(sw, 1)
        sxx = (w * (x - xm[:, None]) ** 2).sum(1)
        sxy = (w * (x - xm[:, None]) * (y - ym[:, None])).sum(1)
        slope = np.where((sw >= 2) & (sxx > 0), sxy / np.where(sxx > 0, sxx, 1), np.nan)
        changes[:, d] = slope * (x.max() - x.min())
    return changes, counts, per_choice


@dataclass(frozen=True)
class ChangeTest:
    """The fitted change of one (stage, dimension) with its uncertainty."""

    stage: int
    dimension: str
    change: float
    se: float
    ci: tuple[float, float]
    p: float
    p_adjusted: float
    counts: tuple[int, ...]  # archs behind each choice
    choice_se: tuple[float, ...]  # bootstrap standard error of each choice's E-T Error

    def to_dict(self) -> dict:
        return {"stage": self.stage, "dimension": self.dimension, "change": self.change, "se": self.se,
                "ci_low": self.ci[0], "ci_high": self.ci[1], "p": self.p, "p_adjusted": self.p_adjusted,
                "counts": list(self.counts), "choice_se": list(self.choice_se)}


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control)."""
    p = np.asarray(p, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def _over_resamples(statistic: Callable[..., np.ndarray], x: np.ndarray, *args, **kwargs) -> np.ndarray:
    """A NaN-ignoring numpy statistic over the resamples (axis 0). A choice that no arch of a
    resample takes has no E-T Error there, one that no arch of the pool takes has none anywhere,
    and a dimension with fewer than two such choices no change: their statistic is NaN, an expected
    case, so numpy's warning about it is silenced rather than shown to the user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return statistic(x, *args, axis=0, **kwargs)


def _resample_sd(x: np.ndarray) -> np.ndarray:
    return _over_resamples(np.nanstd, x, ddof=1)


def _p_values(change: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Two-sided p of z = change / se; an exactly repeatable change (se = 0) is certain unless it is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(change) / se
    p = 2 * norm.sf(z)
    p = np.where(se > 0, p, np.where(np.abs(change) > 0, 0.0, 1.0))
    return np.where(np.isnan(change), 1.0, p)


def _testable(counts: list[np.ndarray]) -> np.ndarray:
    """(dims,) whether a dimension can be tested (first row of counts): every choice it has archs of
    has at least MIN_ARCHS, and at least two do. A choice no arch of the pool takes (outside the
    budget band) is left out of the fit and of every resample alike."""
    return np.array([((c[0] == 0) | (c[0] >= MIN_ARCHS)).all() and (c[0] >= MIN_ARCHS).sum() >= 2 for c in counts],
                    dtype=bool)


def _bootstrap(errors: np.ndarray, grouping: Grouping, top_k: int, index: np.ndarray) -> tuple:
    """Changes (B, dims) and per-choice E-T Errors of every resample: `index` (B, N) holds the
    resampled arch positions."""
    labels = grouping.labels[:, index].transpose(1, 0, 2)  # (B, dims, N)
    changes, _, per_choice = _changes(errors[index], labels, grouping.values, top_k)
    return changes, per_choice


def change_tests(space: SearchSpace, pool: Sequence[PooledArch], errors: Sequence[float], top_k: int,
                 resamples: int = 1000, seed: int = 0) -> list[ChangeTest]:
    """Every testable dimension's fitted change, standard error, 95 % interval and p-values."""
    grouping = Grouping.of(space, pool)
    e = np.asarray(errors, dtype=float)[None, :]
    change, counts, _ = _changes(e, grouping.labels, grouping.values, top_k)
    index = np.random.default_rng(seed).integers(0, e.shape[1], size=(resamples, e.shape[1]))
    boot, boot_choices = _bootstrap(e[0], grouping, top_k, index)
    se = _resample_sd(boot)
    low, high = _over_resamples(np.nanquantile, boot, [0.025, 0.975])
    p = np.where(_testable(counts), _p_values(change[0], se), 1.0)
    adjusted = holm(p)
    return [ChangeTest(s, dim, float(change[0, d]), float(se[d]), (float(low[d]), float(high[d])), float(p[d]),
                       float(adjusted[d]), tuple(int(n) for n in counts[d][0]),
                       tuple(float(v) for v in _resample_sd(boot_choices[d])))
            for d, (s, dim) in enumerate(grouping.keys)]


def moves_under_null(space: SearchSpace, pool: Sequence[PooledArch], errors: Sequence | np.ndarray, top_k: int,
                     rules: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]], permutations: int = 100,
                     resamples: int = 200, seed: int = 0, first_row_only: Collection[str] = ()) -> dict[str, np.ndarray]:
    """How many dimensions each rule moves on each of `permutations` shufflings of the errors
    across the pool's archs (every arch keeps its pins, no dimension matters). A rule is
    `decide(changes, p_adjusted) -> moved`, both (dims,); the bootstrap inside each permutation
    uses `resamples` resamples (the same resampled positions for every permutation). `errors` may
    hold one row per supernet (M, N) that scored the pool (search.confirm): one shuffling moves all
    rows alike, and a dimension counts where every row's rule moves it the same way; the rules named in
    `first_row_only` judge the first row alone (as on one supernet), under the same shufflings."""
    grouping = Grouping.of(space, pool)
    e = np.atleast_2d(np.asarray(errors, dtype=float))
    rng = np.random.default_rng(seed)
    n = e.shape[1]
    index = rng.integers(0, n, size=(resamples, n))
    labels = grouping.labels[:, index].transpose(1, 0, 2)
    moved = {name: np.zeros(permutations, dtype=np.int64) for name in rules}
    testable = _testable(_changes(e[:1], grouping.labels, grouping.values, top_k)[1])
    for t in range(permutations):
        order = rng.permutation(n)
        agree = {name: np.ones(len(grouping.keys), dtype=bool) for name in rules}
        direction = None  # the first row's; a move counts where every row moves that way
        for i, row in enumerate(e):
            judging = [name for name in rules if i == 0 or name not in first_row_only]
            if not judging:
                break
            shuffled = row[order]
            change = _changes(shuffled[None, :], grouping.labels, grouping.values, top_k)[0][0]
            boot = _changes(shuffled[index], labels, grouping.values, top_k)[0]
            p = holm(np.where(testable, _p_values(change, _resample_sd(boot)), 1.0))
            direction = np.sign(change) if direction is None else direction
            for name in judging:
                agree[name] &= rules[name](change, p) & (np.sign(change) == direction)
        for name in rules:
            moved[name][t] = int(agree[name].sum())
    return moved
