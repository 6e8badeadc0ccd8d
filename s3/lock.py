"""One writer per run directory. Two runs in one directory would mix their checkpoints, states and
results, so a run takes an exclusive lock on `<run dir>/.lock` (an advisory `flock`, which the
operating system releases when the process ends, however it ends: a preempted run never leaves a
stale lock behind) and writes its owner (pid@host) into the file for the refusal message."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only

LOCK_FILE = ".lock"
_held: dict[Path, int] = {}  # directory -> open descriptor holding its lock, for the process's life


def lock_run_dir(directory: str | Path) -> None:
    """Take the run directory's lock, or raise ValueError naming its owner. Only global rank zero
    locks: the other ranks of a DDP run write into the same directory as its workers."""
    directory = Path(directory).resolve()
    if getattr(rank_zero_only, "rank", 0) != 0 or directory in _held:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ValueError(f"{directory}: cannot write there ({e.strerror or e}); set hydra.run.dir (or "
                         f"paths.log_dir) to a writable directory") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 256).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ValueError(f"{directory} is in use by another run ({owner}); two runs in one directory would mix "
                         f"their results: wait for it to end, or choose another hydra.run.dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode())
    _held[directory] = fd
