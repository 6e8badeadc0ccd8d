"""Kendall's tau-b and its bootstrap over items: the one implementation behind every ranking figure
(ranking fidelity, the library, latency). A bootstrap is a matrix of counts, one row per resample
(how many times each item is drawn), row 0 the sample itself; every tau of a figure is computed on
the same rows, so differences between two taus are paired."""

from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau


def kendall(x, y) -> float:
    return float(kendalltau(x, y)[0])


def resample_counts(n: int, draws: int = 2000, seed: int = 0) -> np.ndarray:
    """(1 + draws) x n: row 0 every item once, then `draws` bootstrap resamples of the n items."""
    rng = np.random.default_rng(seed)
    return np.vstack([np.ones(n, dtype=int)] + [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(draws)])


def kendall_resampled(x, y, counts) -> np.ndarray:
    """Kendall's tau-b of x and y over each row of `counts` (0 leaves an item out): the tau scipy
    gives on the expanded sample, two copies of one item a pair tied in both, computed from the
    n x n sign matrices once for every resample."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
    tied_x, tied_y = (sx == 0).astype(float), (sy == 0).astype(float)
    np.fill_diagonal(tied_x, 0)
    np.fill_diagonal(tied_y, 0)
    c = np.asarray(counts, dtype=float)
    n = c.sum(1)
    copies = (c * (c - 1) / 2).sum(1)
    pairs = n * (n - 1) / 2

    def over_pairs(m):
        return np.einsum("bi,ij,bj->b", c, m, c) / 2

    with np.errstate(invalid="ignore", divide="ignore"):
        return over_pairs(sx * sy) / np.sqrt((pairs - over_pairs(tied_x) - copies) * (pairs - over_pairs(tied_y) - copies))


def bootstrap_se(resampled: np.ndarray) -> float:
    """The SE of a figure from its values on `resample_counts`' rows (row 0, the sample, left out);
    a resample on which the figure is undefined (all ties) is dropped."""
    return float(np.nanstd(np.asarray(resampled)[1:]))
