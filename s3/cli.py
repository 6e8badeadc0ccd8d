"""What the entry points share: user errors become one clear line and exit code 2, the config
resolvers (`${cpu_precision:}`) are registered, and a Hydra callback refuses an unwritable run
directory before Hydra itself writes into it."""

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

from s3.precision import register_resolvers
from s3.sweep import in_sweep, record_failure

log = logging.getLogger("s3")
register_resolvers()  # before Hydra composes the entry point's config

USER_ERRORS = (ValueError, FileNotFoundError, MisconfigurationException, MissingMandatoryValue)


def fail(message: str, code: int = 2):
    """One line on stderr (and in the run's log), then exit."""
    message = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    log.error("error: %s", message)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


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
                log.error("error: %s", message)
                print(f"error: {message}", file=sys.stderr)
                record_failure(message)
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
