"""One search in its run directory (`SearchRun`): what the evolution, random and space searches
share. It owns the directory and its resume state, the devices, the data and its cached splits,
and the loggers, which it closes however the search ends."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from s3.config import build_loggers, close_loggers, save_hydra_files, save_resolved_config, sweep_group
from s3.io import atomic_write_text, file_sha256, read_json, remove_orphans
from s3.lock import lock_run_dir
from s3.models import Supernet
from s3.search import context as ctx
from s3.search.constraints import Constraints
from s3.search.evaluator import CachedSplit, CandidateEvaluator
from s3.space import SearchSpace

log = logging.getLogger(__name__)

STATE_FILE = "search_state.json"
IDENTITY_FILE = "search_identity.json"
RESULT_FILE = "result.json"
# What a search writes into its run directory: overwrite=true removes all of it, so that nothing of
# an earlier search (scored pools, iteration supernets, plots) is read back or left beside the new one.
OWNED = (STATE_FILE, IDENTITY_FILE, RESULT_FILE, "config.yaml", "search_split.json", "*_split.*.pt", "archs.csv",
         "history.csv", "picks.csv", "top", "pareto.png", "history.png", "iter*", "searched_space.yaml", "conf",
         "et_error.png", "report.md")
STATE_KEYS = {"space": ("iterations",), "score": (),
              "evolution": ("seed", "generation", "space", "candidates", "history", "rng", "cache")}


def resume_dir(cfg: DictConfig) -> Path:
    """Where the search runs: the output dir, or with `resume=true` the newest run of this task
    that left an unfinished search state (so `python search.py resume=true` just continues)."""
    out = Path(cfg.paths.output_dir)
    if not cfg.get("resume") or (out / STATE_FILE).is_file():
        return out
    for state in sorted(Path(cfg.paths.log_dir).glob(f"{cfg.task_name}/runs/*/{STATE_FILE}"),
                        key=lambda p: p.stat().st_mtime, reverse=True):
        if not (state.parent / RESULT_FILE).is_file():
            log.info("resume=true: continuing %s", state.parent)
            return state.parent
    log.info("resume=true: no unfinished search under %s/%s/runs; starting afresh", cfg.paths.log_dir, cfg.task_name)
    return out


def search_identity(cfg: DictConfig, supernet: Path | None) -> dict:
    """What defines a search's result: a run directory holding another search cannot continue this
    one. Settings that change only speed (batch sizes, workers, caching) are left out."""
    def plain(node) -> dict:
        return OmegaConf.to_container(node, resolve=True)

    identity = {"seed": cfg.seed, "space": plain(cfg.space), "constraints": plain(cfg.constraints),
                "data": {k: v for k, v in plain(cfg.data).items() if k not in ctx.SPEED_KEYS},
                "search": {k: v for k, v in plain(cfg.search).items() if k not in ctx.SPEED_KEYS}}
    if supernet is not None:
        identity["supernet"] = file_sha256(supernet)
    else:  # the space search trains its own supernets
        identity["model"], identity["trainer.max_epochs"] = plain(cfg.model), cfg.trainer.max_epochs
    return identity


def claim_run_dir(cfg: DictConfig) -> Path:
    """The run directory, locked before anything is written into it. Re-running the identical
    command continues the search saved there (what a SLURM requeue does); a finished one is refused
    in one line; `overwrite=true` removes everything an earlier search wrote there and starts afresh."""
    work = resume_dir(cfg)
    lock_run_dir(work)  # first: a search refused here has written nothing into another run's directory
    if getattr(rank_zero_only, "rank", 0) != 0:  # DDP's other ranks: the holder has claimed the directory
        return work
    remove_orphans(work)
    if cfg.get("overwrite"):
        for stale in sorted({p for pattern in OWNED for p in work.glob(pattern)}):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
    elif (work / RESULT_FILE).is_file():
        raise ValueError(f"{work} holds a finished search ({RESULT_FILE}); pass overwrite=true to run it again, "
                         f"or choose another hydra.run.dir")
    save_hydra_files(cfg, work)
    return work


def check_identity(work: Path, identity: dict) -> None:
    """A directory holding a search started with other settings cannot continue this one."""
    saved = work / IDENTITY_FILE
    if not saved.is_file():
        return
    fix = f"delete it and {STATE_FILE} to start afresh there, or pass overwrite=true"
    theirs = read_json(saved, "search identity", ("seed", "space", "data", "search"), fix)
    differ = sorted(k for k in set(theirs) | set(identity) if theirs.get(k) != identity.get(k))
    if differ:
        raise ValueError(f"{work} holds a search started with other settings ({', '.join(differ)}): it cannot "
                         f"continue this one ({saved}); choose another hydra.run.dir, or overwrite=true to start afresh")


@dataclass
class SearchRun:
    """A claimed run directory and everything a search evaluates with. Use it as a context
    manager: entering starts the devices and records the run's identity and config; leaving
    closes the loggers, as `success` or, on an error or a stop, as `failed`."""

    cfg: DictConfig            # this run's own config: its paths.output_dir is `work`
    work: Path
    identity: dict
    space: SearchSpace
    constraints: Constraints
    data: Any                  # the data module, set up
    supernet: Supernet | None = None   # evolution / random: the trained supernet they search
    ckpt: Path | None = None           # ... and its checkpoint
    fabric: L.Fabric | None = field(default=None, init=False)
    _loggers: list | None = field(default=None, init=False, repr=False)
    _splits: dict[str, CachedSplit] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def claim(cls, cfg: DictConfig, work: Path, space: SearchSpace, constraints: Constraints, data: Any,
              supernet: Supernet | None = None, ckpt: Path | None = None) -> SearchRun:
        """The search in `work` (claimed by `claim_run_dir`), its identity checked against the saved one."""
        identity = search_identity(cfg, ckpt)
        check_identity(work, identity)
        own = OmegaConf.merge(cfg, {"paths": {"output_dir": str(work)}})  # resume=true may pick another directory
        run = cls(own, work, identity, space, constraints, data, supernet, ckpt)
        run.saved_state()  # a truncated or foreign state file: one line now, not after the first generation
        return run

    def __enter__(self) -> SearchRun:
        self.fabric = ctx.make_fabric(self.cfg)
        if self.zero:
            atomic_write_text(self.work / IDENTITY_FILE, json.dumps(self.identity))
            save_resolved_config(self.cfg, self.work)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._loggers:
            close_loggers(self._loggers, "failed" if exc_type else "success")
        self._loggers = None

    @property
    def zero(self) -> bool:
        return self.fabric is None or self.fabric.global_rank == 0

    @property
    def resumed(self) -> bool:
        return self.state_file.is_file()

    @property
    def state_file(self) -> Path:
        return self.work / STATE_FILE

    def saved_state(self) -> dict | None:
        if not self.state_file.is_file():
            return None
        kind = {"space": "space", "et_error": "score"}.get(self.cfg.search.name, "evolution")
        return read_json(self.state_file, f"{kind} search state", STATE_KEYS[kind],
                         f"it cannot be continued: delete it (and {IDENTITY_FILE}) to start the search afresh in "
                         f"{self.work}, or pass overwrite=true")

    def save_state(self, state: dict) -> None:
        if self.zero:
            atomic_write_text(self.state_file, json.dumps(state))

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
            resolved = OmegaConf.to_container(self.cfg, resolve=True)
            resolved.pop("hydra", None)
            for logger in self._loggers:
                logger.log_hyperparams(resolved)
        return self._loggers

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)

    def split(self, name: str) -> CachedSplit:
        """The cached `search` (held out from supernet training) or `val` split."""
        if name not in self._splits:
            loader = {"search": self.data.search_dataloader, "val": self.data.val_dataloader}[name]()
            self._splits[name] = ctx.cached_split(self.cfg, self.fabric, loader, name, self.work)
        return self._splits[name]

    def evaluator(self, supernet: Supernet | None = None) -> CandidateEvaluator:
        """Scores archs with `supernet` (default: the searched one) on the search split."""
        supernet = supernet if supernet is not None else self.supernet
        return ctx.make_evaluator(self.cfg, self.fabric, supernet, self.split("search"), self.constraints)
