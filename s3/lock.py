"""One writer per run directory. Two runs in one directory would mix their checkpoints, states and
results, so a run takes an exclusive lock on `<run dir>/.lock` (filelock: an advisory lock the
operating system releases when the process ends, however it ends, so a preempted run never leaves a
stale lock behind) and records its owner (pid@host) beside it for the refusal message."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from filelock import FileLock, Timeout
from lightning.fabric.utilities.rank_zero import rank_zero_only

from s3.io import atomic_write_text

LOCK_FILE = ".lock"
OWNER_FILE = ".lock.owner"  # apart from the lock file, which a refused locker's open truncates
_held: dict[Path, FileLock] = {}  # directory -> its lock, held for the process's life


def lock_run_dir(directory: str | Path) -> None:
    """Take the run directory's lock, or raise ValueError naming its owner. Only global rank zero
    locks: the other ranks of a DDP run write into the same directory as its workers."""
    directory = Path(directory).resolve()
    if getattr(rank_zero_only, "rank", 0) != 0 or directory in _held:
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
