"""AutoFormer-style evolutionary search over a trained supernet (S3 section 5).

Every generation evaluates its candidates, takes the best `parents` of everything evaluated so far,
and builds the next generation from `mutations` mutants, `crossovers` children of two parents
(each stage whole from one of them, so parents of any depths cross) and random candidates up to
`population`. Candidates outside the constraints or
already evaluated are rejected. Random search is the same loop with no mutations and no crossovers,
so both spend exactly `population * generations` evaluations.

`objective=pareto` selects parents by non-dominated sorting and crowding distance over (top-1,
cost) instead of top-1 alone, and returns the Pareto front of one run instead of one run per budget.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from s3.constraints import Constraints
from s3.search.evaluator import ArchRecord, CandidateEvaluator
from s3.search.pareto import non_dominated_fronts, nsga2_select
from s3.space import BLOCK_DIMENSIONS, Arch, SearchSpace

log = logging.getLogger(__name__)

OBJECTIVES = ("accuracy", "pareto")
PARETO_COSTS = ("params", "macs", "latency_ms")  # latency_ms: predicted, needs constraints.latency_ms


@dataclass
class EvolutionConfig:
    population: int = 50
    generations: int = 20
    parents: int = 10
    mutations: int = 25
    crossovers: int = 25
    mutation_prob: float = 0.2        # per block gene (MLP ratio, heads, window)
    stage_mutation_prob: float = 0.4  # per stage depth and embed dim
    objective: str = "accuracy"
    pareto_cost: str = "params"
    max_tries: int = 1000             # draws per candidate before giving up on a slot

    def __post_init__(self) -> None:
        for name in ("population", "generations", "parents"):
            if getattr(self, name) < 1:
                raise ValueError(f"search.{name}={getattr(self, name)}: must be >= 1")
        for name in ("mutations", "crossovers"):
            if getattr(self, name) < 0:
                raise ValueError(f"search.{name}={getattr(self, name)}: must be >= 0")
        if self.mutations + self.crossovers > self.population:
            raise ValueError(f"search.mutations + search.crossovers = {self.mutations + self.crossovers} exceeds "
                             f"search.population={self.population}")
        for name in ("mutation_prob", "stage_mutation_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"search.{name}={getattr(self, name)}: must be in [0, 1]")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"search.objective={self.objective}: allowed {list(OBJECTIVES)}")
        if self.pareto_cost not in PARETO_COSTS:
            raise ValueError(f"search.pareto_cost={self.pareto_cost}: allowed {list(PARETO_COSTS)}")


def mutate(arch: Arch, space: SearchSpace, rng: random.Random, block_prob: float, stage_prob: float) -> Arch:
    """Resample each stage's depth and embed dim with `stage_prob`, each block gene with `block_prob`;
    blocks added by a deeper depth get random genes."""
    depths, dims = list(arch.depths), list(arch.embed_dims)
    genes = {d: [list(arch.values(s, d)) for s in range(arch.num_stages)] for d in BLOCK_DIMENSIONS}
    for s, st in enumerate(space.stages):
        if rng.random() < stage_prob:
            depths[s] = rng.choice(st.depth)
        if rng.random() < stage_prob:
            dims[s] = rng.choice(st.embed_dim)
        for d in BLOCK_DIMENSIONS:
            values = genes[d][s][: depths[s]]
            values += [rng.choice(st.choices(d)) for _ in range(depths[s] - len(values))]
            genes[d][s] = [rng.choice(st.choices(d)) if rng.random() < block_prob else v for v in values]
    return Arch.create(depths, dims, genes["mlp_ratio"], genes["num_heads"], genes["window_size"])


def crossover(a: Arch, b: Arch, rng: random.Random) -> Arch:
    """Stage-wise crossover: every stage (its depth, embed dim and all its blocks' genes) whole from
    either parent with p = 1/2. AutoFormer's gene-wise crossover needs equal depths in every stage,
    which two parents of a space with several depth choices per stage almost never have."""
    parents = [a if rng.random() < 0.5 else b for _ in range(a.num_stages)]
    return Arch.create([p.depths[s] for s, p in enumerate(parents)], [p.embed_dims[s] for s, p in enumerate(parents)],
                       *([list(p.values(s, d)) for s, p in enumerate(parents)] for d in BLOCK_DIMENSIONS))


@dataclass
class Evolution:
    """The search loop and its resumable state (generation, candidates, RNG, evaluated archs)."""

    space: SearchSpace
    constraints: Constraints
    evaluator: CandidateEvaluator
    config: EvolutionConfig
    seed: int = 0
    generation: int = 0
    candidates: list[Arch] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)  # per-generation summary
    made: dict = field(default_factory=lambda: {"mutants": 0, "children": 0, "random": 0})  # of `candidates`

    def __post_init__(self) -> None:
        self.rng = random.Random(f"s3-evolution:{self.seed}")

    # -- candidate generation -------------------------------------------------------------------
    def _valid(self, arch: Arch, taken: set) -> bool:
        return arch not in taken and arch not in self.evaluator and self.constraints.satisfied(arch)

    def _draw(self, make: Callable[[], Arch | None], taken: set) -> Arch | None:
        for _ in range(self.config.max_tries):
            arch = make()
            if arch is not None and self._valid(arch, taken):
                taken.add(arch)
                return arch
        return None

    def random_candidates(self, n: int, taken: set) -> list[Arch]:
        out = []
        for _ in range(n):
            arch = self._draw(lambda: self.space.sample(self.rng), taken)
            if arch is None:
                break
            out.append(arch)
        return out

    def next_candidates(self, parents: Sequence[Arch]) -> list[Arch]:
        """Mutants, crossover children and random archs; `self.made` counts what filled the slots."""
        c, taken = self.config, set()
        mutants, children = [], []
        for _ in range(c.mutations):
            arch = self._draw(lambda: mutate(self.rng.choice(parents), self.space, self.rng,
                                             c.mutation_prob, c.stage_mutation_prob), taken)
            mutants += [arch] if arch else []
        for _ in range(c.crossovers if len(parents) > 1 else 0):
            arch = self._draw(lambda: crossover(*self.rng.sample(list(parents), 2), self.rng), taken)
            children += [arch] if arch else []
        out = mutants + children
        randoms = self.random_candidates(c.population - len(out), taken)
        self.made = {"mutants": len(mutants), "children": len(children), "random": len(randoms)}
        return out + randoms

    # -- selection ------------------------------------------------------------------------------------
    def _objectives(self, r: ArchRecord) -> tuple[float, float]:
        return (-r["top1"], r[self.config.pareto_cost])

    def select(self, records: Sequence[ArchRecord], n: int) -> list[ArchRecord]:
        if self.config.objective == "pareto":
            return [records[i] for i in nsga2_select([self._objectives(r) for r in records], n)]
        return sorted(records, key=lambda r: (-r["top1"], r["params"], str(r["arch"])))[:n]

    def ranked(self) -> list[ArchRecord]:
        return self.select(self.evaluator.records(), len(self.evaluator))

    def pareto_front(self) -> list[ArchRecord]:
        records = self.evaluator.records()
        front = non_dominated_fronts([self._objectives(r) for r in records])[0]
        return sorted((records[i] for i in front), key=lambda r: r[self.config.pareto_cost])

    # -- the loop ---------------------------------------------------------------------------------------
    def run(self, on_generation_end: Callable[[Evolution], None] | None = None,
            progress: Callable[[int], None] | None = None) -> list[ArchRecord]:
        if self.generation == 0 and not self.candidates:
            self.candidates = self.random_candidates(self.config.population, set())
            self.made = {"mutants": 0, "children": 0, "random": len(self.candidates)}
            if not self.candidates:
                raise ValueError(f"no architecture satisfying the constraints ({self.constraints}) was found in "
                                 f"{self.config.max_tries} draws; widen constraints.*.min/max")
        while self.generation < self.config.generations:
            self.evaluator.evaluate(self.candidates, progress)
            parents = [r["arch"] for r in self.select(self.evaluator.records(), self.config.parents)]
            best = self.ranked()[0]
            self.history.append({"generation": self.generation, "evaluated": len(self.evaluator),
                                 "candidates": len(self.candidates), "best_top1": best["top1"],
                                 "best_params": best["params"], "best_macs": best["macs"],
                                 "mean_top1": sum(self.evaluator.record(a)["top1"] for a in self.candidates)
                                 / len(self.candidates), **self.made})
            self.generation += 1
            self.candidates = self.next_candidates(parents) if self.generation < self.config.generations else []
            if on_generation_end:
                on_generation_end(self)
            if self.generation < self.config.generations and not self.candidates:
                log.warning("no new valid candidate can be generated; stopping at generation %d", self.generation)
                break
        return self.ranked()

    # -- resumable state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {"seed": self.seed, "generation": self.generation, "space": self.space.to_dict(),
                "candidates": [a.to_dict() for a in self.candidates], "history": self.history, "made": self.made,
                "rng": [version, list(internal), gauss], "cache": self.evaluator.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed or SearchSpace.from_dict(state["space"]) != self.space:
            raise ValueError(f"resume=true: the saved search state has seed={state['seed']} and another space; "
                             f"it cannot continue this search (seed={self.seed}); delete it or set resume=false")
        self.generation, self.history = state["generation"], state["history"]
        self.candidates = [Arch.from_dict(a) for a in state["candidates"]]
        self.made = state.get("made", self.made)
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.evaluator.load_state_dict(state["cache"])
