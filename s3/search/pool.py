"""The architectures one space-search iteration evaluates (S3 section 4).

The E-T Error of a choice is measured on the subspace where its dimension takes that choice. For a
stage dimension (depth, embed dim) a uniform draw already lies in exactly one such subspace. A
block dimension (MLP ratio, heads, window) has one value per block, and in a deep stage almost
every draw mixes all its choices, so the pool *pins* block dimensions: a pinned (stage, dimension)
takes one choice in every block of the stage. Two ways to pin (`search.subspace`):

- `pinned`: every arch pins one block dimension in every stage, dealt so that each stage cycles
  through all its (dimension, choice) pairs in its own shuffled order; everything not pinned is
  drawn per block. The choices of a dimension therefore differ only in that dimension; what the
  other stages pin is drawn independently of it. A block dimension gets about N / 3 archs.
- `stage_uniform`: every block dimension of every stage is pinned (one value per stage, drawn
  uniformly), so every arch serves every dimension: about N / |choices| archs per choice, but no
  arch of the pool mixes values within a stage.

Either way the iteration costs N evaluations, and the stage dimensions use the whole pool.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass

from s3.constraints import Constraints
from s3.space import BLOCK_DIMENSIONS, Arch, SearchSpace

log = logging.getLogger(__name__)

SUBSPACES = ("pinned", "stage_uniform")


@dataclass(frozen=True)
class PooledArch:
    """An arch of the pool and the (stage, block dimension) pairs it was drawn with pinned."""

    arch: Arch
    pinned: frozenset[tuple[int, str]]


def _stage_cycles(space: SearchSpace, rng: random.Random) -> list[Iterator[tuple[str, object]] | None]:
    """Per stage, an endless sequence of (block dimension, choice) pairs: every pair once per round,
    each round shuffled; None for a stage without a block dimension of two or more choices."""

    def cycle(pairs: list) -> Iterator:
        while True:
            yield from rng.sample(pairs, len(pairs))

    cycles = []
    for stage in space.stages:
        pairs = [(dim, c) for dim in BLOCK_DIMENSIONS if len(stage.choices(dim)) > 1 for c in stage.choices(dim)]
        cycles.append(cycle(pairs) if pairs else None)
    return cycles


def sample_pool(space: SearchSpace, constraints: Constraints, n: int, seed: str,
                subspace: str = "pinned") -> list[PooledArch]:
    """Up to `n` distinct archs of `space` under the constraints, pinned as `subspace` says."""
    if subspace not in SUBSPACES:
        raise ValueError(f"search.subspace={subspace}: allowed {list(SUBSPACES)}")
    rng = random.Random(seed)
    cycles = _stage_cycles(space, rng)

    def stage_values() -> dict:
        return {(i, dim): rng.choice(s.choices(dim)) for i, s in enumerate(space.stages) for dim in BLOCK_DIMENSIONS}

    pool: dict[Arch, PooledArch] = {}
    for _ in range(2 * n):  # a slot whose pins admit no new arch under the constraints is given up
        if len(pool) == n:
            break
        if subspace == "pinned":
            pins = {(i, dim): c for i, cyc in enumerate(cycles) if cyc is not None for dim, c in [next(cyc)]}
        for _ in range(200):
            fixed = pins if subspace == "pinned" else stage_values()
            arch = space.sample(rng, fixed)
            if arch not in pool and constraints.satisfied(arch):
                pool[arch] = PooledArch(arch, frozenset(fixed))
                break
    if len(pool) < n:
        log.warning("only %d distinct archs under the constraints (search.samples=%d)", len(pool), n)
    return list(pool.values())
