"""What the entry points share: user errors become one clear line and exit code 2, `group=null`
reads as the template's `group=none`, and a Hydra callback refuses an unwritable run directory
before Hydra itself writes into it. (The configs are registered by the package: `s3.registry`.)"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from s3.config import CONF_DIR
from s3.console import quiet_library_noise  # noqa: F401  (the entry points' import)
from s3.data.images import BadImageError, bad_image_message
from s3.errors import RunStopped
from s3.io import DiskFullError
from s3.run import LOCK_FILE, OWNER_FILE
from s3.sweep import in_sweep, record_failure

log = logging.getLogger("s3")




def null_as_none(argv: list[str], conf: Path = CONF_DIR) -> list[str]:
    """`logger=null` (the lightning-hydra-template's habit) as `logger=none`: Hydra refuses a null
    choice for a group that has a default. A group without a `none` option is removed (`~group`)."""
    out = []
    for arg in argv:
        group, _, value = arg.partition("=")
        if value == "null" and group.isidentifier() and (conf / group).is_dir():
            arg = f"{group}=none" if (conf / group / "none.yaml").is_file() else f"~{group}"
        out.append(arg)
    return out


USER_ERRORS = (ValueError, FileNotFoundError, MisconfigurationException, MissingMandatoryValue)


def fail(message: str, code: int = 2):
    """One line on stderr (and in the run's log file, not a second time on the console), then
    exit. A run directory that a refused start left empty (Hydra's log file aside) is removed."""
    report(message)
    remove_if_left_empty()
    sys.exit(code)


def report(message: str) -> str:
    """The error as one line, on stderr and in the run's log file; returns that line's message."""
    message = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    log_to_files(f"error: {message}")
    print(f"error: {message}", file=sys.stderr)
    return message


def log_to_files(message: str) -> None:
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers + log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def remove_if_left_empty() -> None:
    """A refused start in a fresh directory leaves only what starting wrote: Hydra's log, `.hydra/`,
    this process's own lock and an empty `checkpoints/`. Anything else (another run's lock or
    files) and the directory is left alone."""
    import shutil

    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    out = Path(HydraConfig.get().runtime.output_dir)
    started = {f"{HydraConfig.get().job.name}.log", ".hydra", LOCK_FILE, OWNER_FILE, "checkpoints"}
    try:
        if not out.is_dir() or any(p.name not in started for p in out.iterdir()):
            return
        if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
            return
        owner = out / OWNER_FILE
        if (out / LOCK_FILE).exists() and not (owner.is_file() and owner.read_text().startswith(f"{os.getpid()}@")):
            return
        logging.shutdown()  # closes Hydra's handle on the log file
        shutil.rmtree(out)
        parent = out.parent  # `<task>/runs/` (and `<task>/`) if this start made them and they hold nothing else
        if parent.name in ("runs", "multiruns") and not any(parent.iterdir()):
            parent.rmdir()
            if not any(parent.parent.iterdir()):
                parent.parent.rmdir()
    except OSError:
        pass


def apply_extras(cfg: DictConfig) -> None:
    """The lightning-hydra-template's `extras`: the config as a rich tree, warnings silenced."""
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        import warnings

        warnings.filterwarnings("ignore")
    if extras.get("print_config"):
        import rich
        import rich.syntax
        import rich.tree
        from omegaconf import OmegaConf

        tree = rich.tree.Tree("config", guide_style="dim")
        for key, value in cfg.items():
            if key == "hydra":
                continue
            text = OmegaConf.to_yaml(value, resolve=False) if isinstance(value, DictConfig) else str(value)
            tree.add(str(key)).add(rich.syntax.Syntax(text, "yaml"))
        rich.print(tree)


def user_error_message(e: BaseException) -> str:
    if isinstance(e, MissingMandatoryValue):
        key = e.full_key or "a value"
        return f"{key} is required and has no value: pass {key}=..."
    if isinstance(e, MisconfigurationException):  # Lightning's own check of the trainer's arguments
        return f"trainer: {str(e).splitlines()[0]}"
    return str(e)


def user_errors_exit(fn):
    """Report bad input (a user error raised while preparing) without a traceback. In a sweep the
    job records it and returns None instead of exiting, so that the other jobs still run."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (*USER_ERRORS, InstantiationException) as e:
            if isinstance(e, InstantiationException):  # raised by a constructor Hydra called
                if not isinstance(e.__cause__, USER_ERRORS):
                    raise
                e = e.__cause__
            message = user_error_message(e)
            if in_sweep():
                record_failure(report(message))
                return None
            fail(message)

    return wrapper


def run_errors_exit(fn):
    """Report a run that stopped for a reason its user can fix (`RunStopped`, or an unreadable
    image or a full disk met outside a training) as one line and exit code 2; in a sweep the job
    records it and returns None, so that the other jobs still run."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (RunStopped, BadImageError, DiskFullError) as e:
            message = bad_image_message(e) if isinstance(e, BadImageError) else str(e)
            if in_sweep():
                record_failure(report(message))
                return None
            fail(message)

    return wrapper


def _writable(directory: Path) -> tuple[bool, Path]:
    """Whether `directory` exists writable, or could be created: its nearest existing ancestor is."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK), existing


class WritableRunDir(Callback):
    """Hydra writes its log file into the run directory before the task starts, so an unwritable
    `hydra.run.dir` (or `hydra.sweep.dir`) would end in Hydra's traceback: say it in one line."""

    def _check(self, config: DictConfig, key: str) -> None:
        directory = Path(str(config.hydra[key].dir))
        ok, existing = _writable(directory)
        if not ok:
            fail(f"hydra.{key}.dir={directory}: cannot write there ({existing} is not a writable directory); "
                 f"choose a writable hydra.{key}.dir (or paths.log_dir)")

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "sweep")
