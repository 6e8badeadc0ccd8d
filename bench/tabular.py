"""A tabular benchmark on the ground-truth library (issue 43, section 3): searches confined to the
library's archs rank them by a supernet's inherited top-1 (`bench/results/library_scores.csv`)
and are scored by their pick's standalone top-1 (`ground_truth.csv`, seed 0). Nothing is trained
or evaluated: a search is a few lookups, so every method runs many search seeds on every
supernet seed the rows hold.

Methods, each with a budget of E evaluations:
- `random`: E library archs drawn at random, the best by the supernet's score;
- `evolution`: AutoFormer's evolution (`s3.search.evolution.Evolution`: its probabilities 0.2 and
  0.4, a fifth of the population as parents, every new candidate a mutant (half) or a child
  (half); population E / 5 for 5 generations), every candidate it makes replaced by the nearest
  library arch it has not evaluated (Hamming distance over the genes);
- `s3`: random search among the library archs inside the seed's searched space (the archs its
  searched-space supernet scored), ranked by that supernet: S3's space and supernet where its archs
  fall in the library (it evaluates all of them when they are fewer than E).
Each runs on the supernets named in METHODS. References: the library's best arch, and its mean
(what a pick at random scores on average).

    python bench/tabular.py    # the table, from the rows
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ground_truth  # noqa: E402
from rows import read_rows  # noqa: E402

from s3.constraints import Constraints  # noqa: E402
from s3.search.evolution import Evolution, EvolutionConfig  # noqa: E402
from s3.space import BLOCK_DIMENSIONS, Arch, SearchSpace  # noqa: E402

METHODS = (("random", "autoformer"), ("evolution", "autoformer"), ("random", "band"), ("evolution", "band"),
           ("random", "s3_iter0"), ("s3", "s3_searched"))
BUDGETS = (20, 50)
REFERENCE = ("random", "autoformer")  # random search on the initial space's supernet, as the study's `random`
LABELS = {"s3": "random in S3's searched space"}  # what `s3` is here: stage 3 of S3, not its space search
SEARCH_SEEDS = 30  # per supernet seed


def genes(arch: Arch, max_depth: int) -> tuple:
    """Every stage's depth and embed dim, and each block slot's genes (None past the stage's depth)."""
    out = []
    for s in range(arch.num_stages):
        out += [arch.depths[s], arch.embed_dims[s]]
        for d in BLOCK_DIMENSIONS:
            values = list(arch.values(s, d))
            out += values + [None] * (max_depth - len(values))
    return tuple(out)


class TabularEvaluator:
    """The `CandidateEvaluator` interface the search loops use, answered from a table of scores."""

    def __init__(self, scores: dict[Arch, float], costs: dict[Arch, dict]):
        self.scores, self.costs = scores, costs
        self._cache: dict[Arch, dict] = {}

    def __contains__(self, arch: Arch) -> bool:
        return arch in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    def record(self, arch: Arch) -> dict:
        return self._cache[arch]

    def records(self) -> list[dict]:
        return list(self._cache.values())

    def evaluate(self, archs: Sequence[Arch], progress: Callable[[int], None] | None = None) -> list[dict]:
        for a in archs:
            self._cache.setdefault(a, {"arch": a, **self.costs[a], "top1": self.scores[a], "loss": 0.0})
        return [self._cache[a] for a in archs]


@dataclass
class LibraryEvolution(Evolution):
    """Evolution whose every candidate is a library arch: a mutant or child is replaced by the
    nearest library arch not yet taken or evaluated, a random candidate is drawn from the library."""

    library: tuple[Arch, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        depth = max(max(st.depth) for st in self.space.stages)
        self._genes = {a: genes(a, depth) for a in self.library}
        self._depth = depth

    def _free(self, taken: set) -> list[Arch]:
        return [a for a in self.library if a not in taken and a not in self.evaluator]

    def _draw(self, make: Callable[[], Arch | None], taken: set) -> Arch | None:
        free = self._free(taken)
        arch = make() if free else None
        if arch is None:
            return None
        g = genes(arch, self._depth)
        distance = {a: sum(x != y for x, y in zip(g, self._genes[a])) for a in free}
        best = min(distance.values())
        near = self.rng.choice([a for a in free if distance[a] == best])
        taken.add(near)
        return near

    def random_candidates(self, n: int, taken: set) -> list[Arch]:
        free = self._free(taken)
        picks = self.rng.sample(free, min(n, len(free)))
        taken.update(picks)
        return picks


def evolution_config(budget: int) -> EvolutionConfig:
    """AutoFormer's proportions at `budget` evaluations: 5 generations of budget / 5, a fifth of a
    generation as parents, every new candidate a mutant (half) or a child (half)."""
    population = budget // 5
    return EvolutionConfig(population=population, generations=5, parents=max(2, population // 5),
                           mutations=population // 2, crossovers=population - population // 2)


def search(method: str, scores: dict[Arch, float], costs: dict[Arch, dict], budget: int, seed: int,
           space: SearchSpace, constraints: Constraints) -> Arch:
    archs = sorted(scores, key=str)
    rng = random.Random(f"tabular:{method}:{seed}")
    if method in ("random", "s3"):
        drawn = rng.sample(archs, min(budget, len(archs)))
        return min(drawn, key=lambda a: (-scores[a], costs[a]["params"], str(a)))  # ties as Evolution.select
    if method == "evolution":
        logging.getLogger("s3.search.evolution").setLevel(logging.ERROR)  # a small library runs out of new archs
        evo = LibraryEvolution(space, constraints, TabularEvaluator(scores, costs), evolution_config(budget),
                               seed=seed, library=tuple(archs))
        return evo.run()[0]["arch"]
    raise ValueError(f"method {method}: allowed random, evolution, s3")


def run(budgets=BUDGETS, search_seeds: int = SEARCH_SEEDS) -> dict:
    """(method, supernet, budget) -> per supernet seed, the mean standalone top-1 of the picks over
    `search_seeds` searches; with the library's best and mean."""
    truth = {a: v["0"] for a, v in ground_truth.truth().items() if "0" in v}
    space = SearchSpace.from_yaml(ground_truth.ROOT / "conf" / "space" / "wide.yaml")
    constraints = Constraints(space, num_classes=10)
    by_arch = {str(a): a for a in ground_truth.library()}
    costs = {a: {k: v for k, v in constraints.cost(a).items() if k in ("params", "macs")} for a in by_arch.values()}
    scores: dict[tuple[str, str], dict[Arch, float]] = {}
    for r in read_rows(ground_truth.SCORES):
        if r["arch"] in truth and r["arch"] in by_arch:
            scores.setdefault((r["supernet"], r["search_seed"]), {})[by_arch[r["arch"]]] = float(r["search_top1"])
    out = {}
    for method, kind in METHODS:
        for budget in budgets:
            per_seed = {}
            for (k, seed), table in sorted(scores.items()):
                smaller = [b for b in budgets if b < budget]
                if k != kind or len(table) < 10 or (method != "s3" and budget >= len(table)) \
                        or (method == "s3" and smaller and max(smaller) >= len(table)):  # s3: all of it already
                    continue
                picks = [search(method, table, costs, budget, s, space, constraints) for s in range(search_seeds)]
                per_seed[seed] = statistics.fmean(truth[str(a)] for a in picks)
                per_seed[seed + ":n"] = len(table)
            out[method, kind, budget] = per_seed
    values = list(truth.values())
    return {"results": out, "best": max(values) if values else None, "mean": statistics.fmean(values) if values else None,
            "archs": len(values)}


def report(search_seeds: int = SEARCH_SEEDS) -> str:
    r = run(search_seeds=search_seeds)
    if not r["archs"]:
        return "No library rows yet."
    seeds_of = {k: sorted((s for s in v if not s.endswith(":n")), key=int) for k, v in r["results"].items()}
    if not any(seeds_of.values()):
        return "No supernet has scored the library yet (`python bench/ground_truth.py --score <the study's --out>`)."
    lines = [f"Searches confined to the {r['archs']} library archs trained so far, {search_seeds} search seeds per "
             f"supernet seed; the pick's seed-0 standalone top-1, the mean over search seeds, then mean ± SE over "
             f"supernet seeds. The library's best arch: {r['best']:.2f} %; its mean (a pick at random): "
             f"{r['mean']:.2f} %.", "",
             "| method | supernet | evaluations | supernet seeds | library archs it ranks | pick's top-1 (%) | "
             "minus the library mean (the same SE) | minus `random` on `autoformer`, same evaluations (paired over "
             "supernet seeds) |", "|---|---|---|---|---|---|---|---|"]
    for (method, kind, budget), v in r["results"].items():
        seeds = seeds_of[method, kind, budget]
        if not seeds:
            continue
        vals = [v[s] for s in seeds]
        sizes = "/".join(str(v[s + ":n"]) for s in seeds)
        ref = r["results"].get((*REFERENCE, budget), {})
        both = [s for s in seeds if s in ref]
        paired = "-" if (method, kind) == REFERENCE or len(both) < 2 else \
            f"{format_mean_se([v[s] - ref[s] for s in both], '+')} ({len(both)} seeds)"
        lines.append(f"| {LABELS.get(method, method)} | {kind} | {budget} | {', '.join(seeds)} | {sizes} | "
                     f"{format_mean_se(vals)} | {statistics.fmean(vals) - r['mean']:+.2f} | {paired} |")
    return "\n".join(lines)


def format_mean_se(values: list[float], sign: str = "") -> str:
    """The mean, and its SE where there are two values or more."""
    m = f"{statistics.fmean(values):{sign}.2f}"
    return f"{m} ± {statistics.stdev(values) / len(values) ** 0.5:.2f}" if len(values) > 1 else m


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--search-seeds", type=int, default=SEARCH_SEEDS)
    args = p.parse_args()
    print(report(args.search_seeds))


if __name__ == "__main__":
    main()
