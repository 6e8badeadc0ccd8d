"""Non-dominated sorting and crowding distance (NSGA-II), for the multi-objective search mode.
Every objective is minimised (pass -accuracy)."""

from __future__ import annotations

from collections.abc import Sequence

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated_fronts(points: Sequence[Point]) -> list[list[int]]:
    """Indices of `points` grouped into fronts: front 0 is the Pareto front."""
    dominated_by = [[] for _ in points]
    counts = [0] * len(points)
    for i, p in enumerate(points):
        for j, q in enumerate(points):
            if dominates(p, q):
                dominated_by[i].append(j)
            elif dominates(q, p):
                counts[i] += 1
    fronts, current = [], [i for i, c in enumerate(counts) if c == 0]
    while current:
        fronts.append(current)
        nxt = []
        for i in current:
            for j in dominated_by[i]:
                counts[j] -= 1
                if counts[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
    return fronts


def crowding_distance(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    dist = {i: 0.0 for i in front}
    for m in range(len(points[front[0]])):
        order = sorted(front, key=lambda i: (points[i][m], i))
        lo, hi = points[order[0]][m], points[order[-1]][m]
        dist[order[0]] = dist[order[-1]] = float("inf")
        if hi == lo:
            continue
        for a, i, b in zip(order, order[1:], order[2:]):
            dist[i] += (points[b][m] - points[a][m]) / (hi - lo)
    return dist


def nsga2_select(points: Sequence[Point], n: int) -> list[int]:
    """The `n` best indices: whole fronts first, the last front cut by crowding distance."""
    chosen: list[int] = []
    for front in non_dominated_fronts(points):
        if len(chosen) + len(front) <= n:
            chosen += front
            continue
        dist = crowding_distance(points, front)
        chosen += sorted(front, key=lambda i: (-dist[i], i))[: n - len(chosen)]
        break
    return chosen
