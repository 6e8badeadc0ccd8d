"""One search in its run directory: `SearchSession`, what the evolution, random, space and E-T
Error searches share. `SearchSession.open(cfg)` checks every input that can fail (config, space,
constraints, data, supernet, held-out split), claims and locks the run directory and reads the
supernet; `run()` starts the devices, dispatches on the search's type and closes the loggers however
the search ends. The session holds what defines the search (its identity), the data and
its cached splits, the evaluators and the loggers."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from s3.config import check_run_config
from s3.constraints import Constraints
from s3.io import file_sha256
from s3.models import Supernet, SupernetCheckpoint
from s3.run import SEARCH, RunDir, build_loggers, close_loggers, log_config, save_resolved_config, sweep_group
from s3.search import arch_search, space_search
from s3.search.configs import ETErrorSearch, Evaluation, SpaceSearch, search_config
from s3.search.devices import cached_split, fabric_strategy, make_fabric
from s3.search.evaluator import CachedSplit, CandidateEvaluator
from s3.search.inputs import (
    build_constraints,
    build_data,
    check_split_unseen,
    data_settings,
    price_latency,
    resolve_supernet,
    setup_data,
)
from s3.space import SearchSpace
from s3.sweep import override_key

log = logging.getLogger(__name__)

STATE_KEYS = {"space": ("iterations",), "et_error": (),
              "evolution": ("seed", "generation", "space", "candidates", "history", "rng", "cache")}
SEARCH_SPEED_KEYS = frozenset(f.name for f in fields(Evaluation))
# knobs added after runs were started, at the value that is the earlier behaviour: left out of the
# identity there, so a run started before the knob existed continues on the identical command
NEUTRAL_KNOBS = {"confirm": False}


# -- the run directory -----------------------------------------------------------------------------
def explicit_run_dir() -> bool:
    """Whether the command named its run directory: `hydra.run.dir=...`, or a multirun's job (its
    sweep subdirectory is its own)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False
    hydra = HydraConfig.get()
    return hydra.mode == RunMode.MULTIRUN or any(override_key(o) == "hydra.run.dir" for o in hydra.overrides.hydra)


def resume_dir(cfg: DictConfig) -> Path:
    """Where the search runs: the output dir, or with `resume=true` and no run directory named on
    the command line, the newest run of this task that left an unfinished search state (so
    `python search.py resume=true` just continues). A named directory is always the one continued."""
    out = Path(cfg.paths.output_dir)
    if not cfg.get("resume") or (out / SEARCH.state).is_file() or explicit_run_dir():
        return out
    for state in sorted(Path(cfg.paths.log_dir).glob(f"{cfg.task_name}/runs/*/{SEARCH.state}"),
                        key=lambda p: p.stat().st_mtime, reverse=True):
        if not RunDir(state.parent, SEARCH).finished:
            log.info("resume=true: continuing %s", state.parent)
            return state.parent
    log.info("resume=true: no unfinished search under %s/%s/runs; starting afresh", cfg.paths.log_dir, cfg.task_name)
    return out


def claim_run_dir(cfg: DictConfig) -> RunDir:
    """The search's run directory, claimed (`s3.run`): re-running the identical command continues
    the search saved there (what a SLURM requeue does), a finished one is refused in one line, and
    `overwrite=true` removes everything an earlier search wrote there (scored pools, iteration
    supernets, plots), so that nothing of it is read back or left beside the new one."""
    run_dir = RunDir.claim(resume_dir(cfg), SEARCH, overwrite=bool(cfg.get("overwrite")))
    run_dir.record_hydra(cfg)
    return run_dir


def search_identity(cfg: DictConfig, search: Evaluation, supernet: Path | None) -> dict:
    """What defines a search's result: a run directory holding another search cannot continue this
    one. Settings that change only speed (batch sizes, workers, caching) are left out."""
    def plain(node) -> dict:
        return OmegaConf.to_container(node, resolve=True)

    identity = {"seed": cfg.seed, "space": plain(cfg.space), "constraints": plain(cfg.constraints),
                "data": data_settings(cfg),
                "search": {"kind": search.kind,
                           **{k: v for k, v in asdict(search).items()
                              if k not in SEARCH_SPEED_KEYS and NEUTRAL_KNOBS.get(k, object()) != v}}}
    if supernet is not None:
        identity["supernet"] = file_sha256(supernet)
    else:  # the space search trains its own supernets
        identity["model"], identity["trainer.max_epochs"] = plain(cfg.model), cfg.trainer.max_epochs
    return identity


def check_workers(workers: int, trainer: DictConfig) -> None:
    """Forked scoring processes split the candidates of one CPU process; on several devices the
    ranks already split them."""
    if workers > 1 and (trainer.accelerator != "cpu" or trainer.devices != 1 or trainer.num_nodes != 1):
        raise ValueError(f"search.workers={workers}: scoring processes serve a one-process CPU search (trainer.accelerator="
                         f"cpu, trainer.devices=1, trainer.num_nodes=1), not accelerator={trainer.accelerator} devices="
                         f"{trainer.devices} num_nodes={trainer.num_nodes}; set search.workers=1")


# -- the session -----------------------------------------------------------------------------------
@dataclass
class SearchSession:
    """A claimed run directory and everything a search evaluates with."""

    cfg: DictConfig            # this run's own config: its paths.output_dir is `work`
    search: Evaluation         # the typed `search` node: EvolutionSearch, RandomSearch, SpaceSearch, ETErrorSearch
    run_dir: RunDir
    identity: dict
    space: SearchSpace
    constraints: Constraints
    data: Any                  # the data module, set up
    supernet: Supernet | None = None   # evolution / random / et_error: the trained supernet they search
    ckpt: Path | None = None           # ... and its checkpoint
    fabric: L.Fabric | None = field(default=None, init=False)
    _loggers: list | None = field(default=None, init=False, repr=False)
    _splits: dict[str, CachedSplit] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def open(cls, cfg: DictConfig) -> SearchSession:
        """Everything that can fail on bad input, before any evaluation. The config is checked first,
        then the run directory is locked, and only then is anything (the search split) written."""
        check_run_config(cfg)
        fabric_strategy(cfg.trainer)  # a strategy Fabric cannot take: said now, not after the split is written
        search = search_config(cfg.search)
        check_workers(search.workers, cfg.trainer)
        space = SearchSpace.from_dict(cfg.space)
        constraints = build_constraints(cfg, space, latency_objective=getattr(search, "objective", None) == "pareto"
                                        and getattr(search, "pareto_cost", None) == "latency_ms")
        data = build_data(cfg)
        ckpt = None if isinstance(search, SpaceSearch) else resolve_supernet(cfg, space)
        price_latency(cfg, space, constraints)  # the one input that takes time: after every other check
        run_dir = claim_run_dir(cfg)
        work = run_dir.path
        setup_data(data, work)
        supernet = None
        if ckpt is not None:
            trained = SupernetCheckpoint.read(ckpt).check("supernet", space, cfg.data.num_classes)
            supernet = trained.build()
            check_split_unseen(trained, ckpt, data)
        identity = search_identity(cfg, search, ckpt)
        run_dir.check_identity(identity, ("seed", "space", "data", "search"))
        own = OmegaConf.merge(cfg, {"paths": {"output_dir": str(work)}})  # resume=true may pick another directory
        session = cls(own, search, run_dir, identity, space, constraints, data, supernet, ckpt)
        session.saved_state()  # a truncated or foreign state file: one line now, not after the first generation
        return session

    def run(self) -> dict:
        """Starts the devices, records the run's identity and config, searches; the loggers close as
        `success` or, on an error or a stop, as `failed`."""
        self.fabric = make_fabric(self.cfg)
        if self.zero:
            self.run_dir.save_identity(self.identity)
            save_resolved_config(self.cfg, self.work)
        try:
            if isinstance(self.search, SpaceSearch):
                result = space_search.run_space_search(self)
            elif isinstance(self.search, ETErrorSearch):
                result = space_search.run_space_score(self)
            else:
                result = arch_search.run_arch_search(self)
        except BaseException:
            self._close_loggers("failed")
            raise
        self._close_loggers("success")
        return result

    def _close_loggers(self, status: str) -> None:
        if self._loggers:
            close_loggers(self._loggers, status)
        self._loggers = None

    @property
    def zero(self) -> bool:
        return self.fabric is None or self.fabric.global_rank == 0

    @property
    def work(self) -> Path:
        return self.run_dir.path

    # -- resume state and result -----------------------------------------------------------------
    def saved_state(self) -> dict | None:
        kind = self.search.kind if self.search.kind in STATE_KEYS else "evolution"  # random: evolution's state
        return self.run_dir.read_state(f"{kind} search state", STATE_KEYS[kind],
                                       f"it cannot be continued: delete it (and {SEARCH.identity}) to start the search "
                                       f"afresh in {self.work}, or pass overwrite=true")

    def save_state(self, state: dict) -> None:
        self.run_dir.write_state(state)

    def write_result(self, result: dict) -> None:
        """result.json, last: its presence marks the search finished."""
        self.run_dir.finish(result)

    # -- loggers -----------------------------------------------------------------------------------
    @property
    def wandb_group(self) -> str:
        """One W&B group per search: the space search's trainings and its summary land together."""
        return OmegaConf.select(self.cfg, "logger.wandb.group", default=None) or sweep_group() or self.work.name

    @property
    def loggers(self) -> list:
        """Rank zero's loggers, opened on first use: a space search's trainings open their own W&B
        runs first, which a live one would swallow."""
        if self._loggers is None:
            self._loggers = build_loggers(self.cfg, group=self.wandb_group) if self.zero else []
            log_config(self._loggers, self.cfg)
        return self._loggers

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)

    # -- evaluation --------------------------------------------------------------------------------
    def split(self, name: str) -> CachedSplit:
        """The cached `search` (held out from supernet training) or `val` split."""
        if name not in self._splits:
            loader = {"search": self.data.search_dataloader, "val": self.data.val_dataloader}[name]()
            self._splits[name] = cached_split(self.cfg, self.search, self.fabric, loader, name, self.work)
        return self._splits[name]

    def evaluator(self, supernet: Supernet | None = None) -> CandidateEvaluator:
        """Scores archs with `supernet` (default: the searched one) on the search split."""
        supernet = supernet if supernet is not None else self.supernet
        return CandidateEvaluator(self.fabric.to_device(supernet), self.split("search"), self.constraints,
                                  self.search.batch_size, self.fabric.autocast, self.fabric, self.search.workers)
