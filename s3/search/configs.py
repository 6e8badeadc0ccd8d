"""The `search` config group as types: one dataclass per search, registered with Hydra as the
schema its `conf/search/*.yaml` extends. The dataclass is the one source of every knob's default,
Hydra checks types and unknown keys while composing, `__post_init__` checks values once, and
search.py dispatches on the type (`kind` names it in logs and outputs).

    python search.py --cfg job -p search     # the composed values
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from s3.search.evolution import EvolutionConfig
from s3.search.pool import SUBSPACES
from s3.search.shift import MoveRule

SPLIT_CACHES = ("memory", "mmap")
SPLIT_DTYPES = ("float32", "float16", "bfloat16")


def _at_least(config, name: str, least: int) -> None:
    if getattr(config, name) < least:
        raise ValueError(f"search.{name}={getattr(config, name)}: must be >= {least}")


def _one_of(config, name: str, allowed: tuple[str, ...]) -> None:
    if getattr(config, name) not in allowed:
        raise ValueError(f"search.{name}={getattr(config, name)}: allowed {list(allowed)}")


@dataclass
class Evaluation:
    """How candidates are scored, shared by every search; these change speed, never a result."""

    batch_size: int = 128          # evaluation batch: on CPU the embedded models' activations then stay
                                   # below glibc's 32 MB mmap threshold (no page faults per batch); the
                                   # search engine ran 1.51x / 1.56x faster than at 500 (one interleaved
                                   # run per space; bench/README.md, "Roofline")
    split_cache: str = "memory"    # memory | mmap (ImageNet-size search splits: a memory-mapped file)
    split_dtype: str = "float32"   # float32 | float16 | bfloat16 storage of the cached split
    workers: int = 1               # a one-process CPU search: candidates scored in this many forked
                                   # processes of one thread each (2 on 2 cores: 1.3x the archs per
                                   # second of one two-thread process; bench/README.md, "make demo")

    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _at_least(self, "batch_size", 1)
        _at_least(self, "workers", 1)
        _one_of(self, "split_cache", SPLIT_CACHES)
        _one_of(self, "split_dtype", SPLIT_DTYPES)


@dataclass
class EvolutionSearch(Evaluation, EvolutionConfig):
    """AutoFormer-style evolution on a trained supernet (S3 section 5); the knobs of the loop are
    `EvolutionConfig`'s (population 50, generations 20, parents 10, 25 mutations, 25 crossovers,
    mutation probabilities 0.2 per block gene and 0.4 per stage, objective accuracy | pareto)."""

    top_k: int = 5                 # archs exported as YAML and measured on the validation set

    kind: ClassVar[str] = "evolution"

    def __post_init__(self) -> None:
        EvolutionConfig.__post_init__(self)
        Evaluation.__post_init__(self)
        _at_least(self, "top_k", 1)


@dataclass
class RandomSearch(EvolutionSearch):
    """Random search with evolution's budget: evolution without variation, population *
    generations distinct archs."""

    mutations: int = 0
    crossovers: int = 0

    kind: ClassVar[str] = "random"


@dataclass
class PoolSearch(Evaluation):
    """An E-T Error pool: N archs drawn under the constraints, its top tier of K."""

    samples: int = 1000            # N archs sampled per pool under the constraints (our choice)
    top_k: int = 50                # K: the top tier of the N (our choice)
    subspace: str = "pinned"       # pinned (one block dim per stage pinned per arch, the rest free per block) |
                                   # stage_uniform (every block dim one value per stage); s3/search/pool.py

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least(self, "samples", 1)
        _at_least(self, "top_k", 1)
        if self.top_k > self.samples:
            raise ValueError(f"search.top_k={self.top_k}: the top tier cannot exceed search.samples={self.samples}")
        _one_of(self, "subspace", SUBSPACES)


@dataclass
class ETErrorSearch(PoolSearch):
    """The E-T Error of a space on a trained supernet of it, e.g. the searched space on the supernet
    trained for it (stage 2 of the pipeline), beside the space search's iterations."""

    kind: ClassVar[str] = "et_error"


@dataclass
class SpaceSearch(PoolSearch):
    """Searching the search space (S3 section 4). The paper gives no values for T, N, K, the
    threshold or the fine-tune budget: every default here is this project's choice (README.md,
    "Design choices")."""

    iterations: int = 3                 # T (our choice)
    move_rule: str = "significant"      # significant: move when the change exceeds the threshold AND is significant
                                        # at family-wise error `alpha` (bootstrap SE, Holm over the iteration's
                                        # dimensions) | threshold: the paper's plain rule
    threshold: float = 0.5              # error points the fitted change across a dimension's choices must exceed
    alpha: float = 0.05                 # family-wise error of one iteration's moves (move_rule=significant)
    bootstrap: int = 1000               # resamples of the pool's archs behind every change's SE and interval
    null_permutations: int = 100        # shufflings of the errors across the pool: moves expected under noise (0 = off)
    null_bootstrap: int = 200           # resamples inside each shuffling
    train_epochs: int | None = None  # first iteration; None = trainer.max_epochs
    finetune_epochs: int | None = None  # later iterations, from the previous supernet's weights; None = trainer's
    finetune_warmup_epochs: float | None = None  # warmup of a fine-tune; None = model.optim.warmup_epochs
    confirm: bool = True                # a second supernet per iteration (seed + CONFIRM_SEED) scores the same pool; a
                                        # dimension moves only where both make the same move (twice the supernet cost).
                                        # On by the study's pre-registered decision: one supernet's moves do not
                                        # replicate across supernet seeds (bench/README.md); false: one supernet

    kind: ClassVar[str] = "space"

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least(self, "iterations", 1)
        for name in ("train_epochs", "finetune_epochs", "finetune_warmup_epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"search.{name}={getattr(self, name)}: must be >= 0 (null: the trainer's / model's own)")
        self.rule  # noqa: B018 -- the move rule's own checks
        for name, least in (("bootstrap", 50), ("null_permutations", 0), ("null_bootstrap", 50)):
            _at_least(self, name, least)

    @property
    def rule(self) -> MoveRule:
        return MoveRule(self.move_rule, self.threshold, self.alpha)


SEARCHES: tuple[type[Evaluation], ...] = (EvolutionSearch, RandomSearch, SpaceSearch, ETErrorSearch)


def schema_name(search: type[Evaluation]) -> str:
    return f"base_{search.kind}"


def register_search_schemas() -> None:
    """`conf/search/<kind>.yaml` extends `base_<kind>` (its defaults list)."""
    store = ConfigStore.instance()
    for search in SEARCHES:
        store.store(group="search", name=schema_name(search), node=search)


def search_config(node: DictConfig) -> Evaluation:
    """The composed `search` node as its dataclass, its values checked (one line on bad input)."""
    kind = OmegaConf.get_type(node)
    if kind not in SEARCHES:
        raise ValueError(f"search: {kind.__name__ if kind else None} is not a search; a conf/search/*.yaml extends one "
                         f"of {[schema_name(s) for s in SEARCHES]} in its defaults list")
    return kind(**OmegaConf.to_container(node, resolve=True))
