"""A run's directory, for every entry point: one writer at a time, claiming it, the marker of a
finished run, the resume state and the run's records.

- **One writer.** Two runs in one directory would mix their checkpoints, states and results, so a
  run takes an exclusive lock on `<dir>/.lock` (filelock: an advisory lock the operating system
  releases when the process ends, however it ends, so a preempted run never leaves a stale lock)
  and records its owner (pid@host) beside it for the refusal message. Only global rank zero locks:
  the other ranks of a DDP run write into the same directory as its workers.
- **Claiming.** The lock first (a refused run has written nothing into another run's directory),
  then the temporaries of a killed writer are removed, and then either `overwrite=true` removes
  everything an earlier run of this kind wrote there, or a finished run (its marker file) is
  refused in one line. Re-running the identical command in an unfinished directory continues it.
- **Records.** Hydra's `.hydra/` files (written here, once the lock is held, not by Hydra before
  the task starts), the resolved `config.yaml`, the resume state and the marker, all atomic.
- **Loggers.** The run's loggers (W&B named after the run and grouped by sweep), its config logged
  to them, and their closing however the run ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from s3.io import atomic_write_text, read_json, remove_orphans

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
OWNER_FILE = ".lock.owner"  # apart from the lock file, which a refused locker's open truncates
_held: dict[Path, FileLock] = {}  # directory -> its lock, held for the process's life


def is_rank_zero() -> bool:
    """Global rank zero (also outside any distributed run): the process that owns the directory."""
    return getattr(rank_zero_only, "rank", 0) == 0


def lock_run_dir(directory: str | Path) -> None:
    """Take the run directory's lock, or raise ValueError naming its owner (rank zero only)."""
    directory = Path(directory).resolve()
    if not is_rank_zero() or directory in _held:
        return
    lock = FileLock(directory / LOCK_FILE, is_singleton=False)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:
        owner_file = directory / OWNER_FILE
        owner = (owner_file.read_text().strip() if owner_file.is_file() else "") or "unknown"
        raise ValueError(f"{directory} is in use by another run ({owner}); two runs in one directory would mix "
                         f"their results: wait for it to end, or choose another hydra.run.dir") from None
    except OSError as e:
        raise ValueError(f"{directory}: cannot write there ({e.strerror or e}); set hydra.run.dir (or "
                         f"paths.log_dir) to a writable directory") from None
    atomic_write_text(directory / OWNER_FILE, f"{os.getpid()}@{socket.gethostname()}\n")
    _held[directory] = lock


@dataclass(frozen=True)
class RunKind:
    """What one entry point's run writes: `marker` (present: the run finished), `owned` (what
    `overwrite=true` removes, glob patterns), `state` (its resume state, if it has one) and
    `subdirs` (where it writes atomically besides the directory itself)."""

    name: str
    marker: str
    owned: tuple[str, ...]
    state: str | None = None
    subdirs: tuple[str, ...] = ()
    identity: str | None = None  # what defines the run's result (a search's settings), for continuing it


TRAINING = RunKind("run", "finished.json", ("checkpoints/*.ckpt", "sampled_archs.rank*.jsonl", "finished.json"),
                   subdirs=("checkpoints",))
SEARCH = RunKind("search", "result.json", (
    "search_state.json", "search_identity.json", "result.json", "config.yaml", "search_split.json", "*_split.*.pt",
    "archs.csv", "history.csv", "picks.csv", "top", "pareto.png", "history.png", "iter*", "searched_space.yaml",
    "conf", "et_error.png", "report.md"), state="search_state.json", identity="search_identity.json")
EVALUATION = RunKind("evaluation", "evaluation.json", ("evaluation.json",))
# a model directory (s3/export.py): config.json is written last, so its presence marks a complete export
EXPORT = RunKind("export", "config.json", ("config.json", "model.safetensors", "README.md"))


@dataclass(frozen=True)
class RunDir:
    """A claimed run directory (`RunDir.claim`)."""

    path: Path
    kind: RunKind

    @classmethod
    def claim(cls, path: str | Path, kind: RunKind, overwrite: bool = False,
              keep: tuple[str, str | Path | None] = ("", None)) -> RunDir:
        """Lock `path` and claim it for a run of `kind`: a finished run is refused unless
        `overwrite`, which removes what an earlier run wrote there. `keep` = (key, file) names an
        input the run reads that must not lie among what overwrite removes (train.py's
        `ckpt_path`)."""
        run = cls(Path(path), kind)
        lock_run_dir(run.path)
        if not is_rank_zero():  # DDP's other ranks: the holder has claimed the directory
            return run
        for directory in (run.path, *(run.path / s for s in kind.subdirs)):
            for orphan in remove_orphans(directory):
                log.warning("removed %s, left by a process killed while writing it", orphan)
        if overwrite:
            owned = sorted({p for pattern in kind.owned for p in run.path.glob(pattern)})
            key, kept = keep
            if kept and Path(kept).resolve() in {p.resolve() for p in owned}:
                raise ValueError(f"{key}={kept} lies in the run directory that overwrite=true clears; copy it "
                                 f"elsewhere first, or drop overwrite=true to continue from it")
            for stale in owned:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
        elif run.finished:
            raise ValueError(f"{run.path} holds a finished {kind.name} ({kind.marker}); pass overwrite=true to run it "
                             f"again from scratch, or choose another hydra.run.dir")
        return run

    # -- the finished marker ---------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return (self.path / self.kind.marker).is_file()

    def finish(self, record: dict[str, Any]) -> Path:
        """The marker, written last and atomically: its presence says the run finished."""
        return atomic_write_text(self.path / self.kind.marker, json.dumps(record, indent=2, default=str))

    # -- the resume state ------------------------------------------------------------------------
    def read_state(self, what: str, keys: Sequence[str], fix: str) -> dict | None:
        """The saved resume state, None if there is none; a truncated or foreign file: one line."""
        state = self.path / self.kind.state
        return read_json(state, what, tuple(keys), fix) if state.is_file() else None

    def write_state(self, state: dict) -> None:
        if is_rank_zero():
            atomic_write_text(self.path / self.kind.state, json.dumps(state))

    # -- the identity: what a run must share with the one it continues ----------------------------
    def check_identity(self, identity: dict, keys: Sequence[str]) -> None:
        """A directory holding a run started with other settings cannot continue this one."""
        saved = self.path / self.kind.identity
        if not saved.is_file():
            return
        fix = f"delete it and {self.kind.state} to start afresh there, or pass overwrite=true"
        theirs = read_json(saved, f"{self.kind.name} identity", tuple(keys), fix)
        differ = _differing_keys(theirs, identity)
        if differ:
            raise ValueError(f"{self.path} holds a {self.kind.name} started with other settings ({'; '.join(differ)}): "
                             f"it cannot continue this one ({saved}); choose another hydra.run.dir, or overwrite=true "
                             f"to start afresh")

    def save_identity(self, identity: dict) -> None:
        if is_rank_zero():
            atomic_write_text(self.path / self.kind.identity, json.dumps(identity))

    # -- the records -----------------------------------------------------------------------------
    def record_hydra(self, cfg: DictConfig) -> None:
        """Hydra's record of the run (`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`), written
        once the run holds the lock: Hydra itself would write it before the task starts
        (`hydra.output_subdir`, null in conf/hydra/default.yaml), over the files of a run that holds
        the directory and will refuse this one."""
        if not HydraConfig.initialized() or not is_rank_zero():
            return
        hydra = HydraConfig.get()
        task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
        out = self.path / ".hydra"
        atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(task))
        atomic_write_text(out / "hydra.yaml", OmegaConf.to_yaml({"hydra": hydra}))
        atomic_write_text(out / "overrides.yaml", OmegaConf.to_yaml(hydra.overrides.task))


_UNSET = object()  # a key one identity has and the other lacks


def _differing_keys(theirs: dict, ours: dict, prefix: str = "") -> list[str]:
    """The dotted keys where two identities differ, with both values where they are plain ones
    (`search.confirm: unset there, True here`), so that the message says which setting to pass."""
    def shown(value: Any) -> str:
        return "unset" if value is _UNSET else "..." if isinstance(value, dict | list) else repr(value)

    keys = []
    for k in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(k, _UNSET), ours.get(k, _UNSET)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _differing_keys(a, b, f"{prefix}{k}.")
        else:
            keys.append(f"{prefix}{k}: {shown(a)} there, {shown(b)} here")
    return keys


def save_resolved_config(cfg: DictConfig, directory: str | Path) -> Path:
    """The fully resolved config (seed, space, constraints...) next to the outputs."""
    return atomic_write_text(Path(directory) / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


# -- the run's loggers ---------------------------------------------------------------------------
def sweep_group() -> str | None:
    """In a multirun, the sweep directory's name: one sweep, one W&B group."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir).name
    return None


def run_name(cfg: DictConfig, name: str) -> str:
    """A W&B run's name. The default (the task's name) grows the experiment and the command's
    overrides (`train tiny`, `train experiment=retrain_tiny,arch=top1.yaml`), so that runs outside
    a sweep can be told apart; in a multirun, the job's number too (`search [1] seed=2`). A name
    given with `logger.wandb.name=...` is kept."""
    if not HydraConfig.initialized():
        return name
    hydra = HydraConfig.get()
    overrides = hydra.job.override_dirname if "override_dirname" in hydra.job else ""
    default, sweep = name == cfg.get("task_name"), sweep_group() is not None
    experiment = hydra.runtime.choices.get("experiment") if default else None
    parts = [name, experiment if experiment and f"experiment={experiment}" not in overrides else "",
             f"[{hydra.job.num}]" if sweep else "", overrides if default or sweep else ""]
    return " ".join(p for p in parts if p)[:128]


def log_config(loggers: list, cfg: DictConfig) -> None:
    """The run's resolved config (without Hydra's own node) as every logger's hyperparameters."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    for logger in loggers:
        logger.log_hyperparams(resolved)


def build_loggers(cfg: DictConfig, group: str | None = None) -> list:
    """The config's loggers. A W&B run is named by `run_name`,
    grouped in `group` if given, else in the config's group, else, in a multirun, in the sweep's
    (one sweep, one group)."""
    loggers = []
    for conf in (cfg.get("logger") or {}).values():
        extra = {}
        if "Wandb" in conf._target_:
            extra["name"] = run_name(cfg, str(conf.get("name") or cfg.task_name))
            if group is not None:
                extra["group"] = group
            elif conf.get("group") is None and sweep_group():
                extra["group"] = sweep_group()
        loggers.append(instantiate(conf, **extra))
    return loggers


def close_loggers(loggers: list, status: str = "success") -> None:
    """Finalize, and end the W&B run, so that the next run in this process (the next training of a
    space search, the next test) starts its own instead of writing into this one."""
    for logger in loggers:
        logger.finalize(status)
        if "Wandb" in type(logger).__name__:
            import wandb

            wandb.finish(exit_code=0 if status == "success" else 1)


@contextlib.contextmanager
def closing(loggers: list) -> Iterator[list]:
    """Closes `loggers` however the block ends: `success`, or `failed` on an error or a stop."""
    status = "failed"
    try:
        yield loggers
        status = "success"
    finally:
        close_loggers(loggers, status)
