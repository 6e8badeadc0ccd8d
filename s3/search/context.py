"""What a search strategy (`arch_search`, `space_search`) receives: the narrow interface of its
session. `SearchSession` implements it; the strategies depend on this module, not on the session,
so the session can dispatch to them without an import circle."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig

from s3.constraints import Constraints
from s3.models import Supernet
from s3.search.configs import Evaluation
from s3.search.evaluator import CachedSplit, CandidateEvaluator
from s3.space import SearchSpace


class SearchContext(Protocol):
    """The search's inputs (config, typed search settings, space, constraints, data, the supernet's
    checkpoint), its run directory's records (resume state, result), its evaluators and loggers."""

    cfg: DictConfig
    search: Evaluation
    space: SearchSpace
    constraints: Constraints
    data: Any
    ckpt: Path | None

    @property
    def work(self) -> Path: ...

    @property
    def zero(self) -> bool: ...

    @property
    def wandb_group(self) -> str: ...

    @property
    def loggers(self) -> list: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def saved_state(self) -> dict | None: ...

    def save_state(self, state: dict) -> None: ...

    def write_result(self, result: dict) -> None: ...

    def split(self, name: str) -> CachedSplit: ...

    def evaluator(self, supernet: Supernet | None = None) -> CandidateEvaluator: ...
