"""Atomic file writes: an interrupted run never leaves a truncated file behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

TMP_GLOB = ".*.tmp"  # what `atomic_path` writes before its rename; left behind only by a killed writer
LOW_SPACE = 64 << 20  # bytes free below which a failed write is taken for a full disk


class DiskFullError(OSError):
    """A write failed because its file system is full; says where and how much is free."""


def _disk_full(error: BaseException, directory: Path) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:  # torch.save reports a full disk as "unexpected pos ..." or "file write failed"
        return shutil.disk_usage(directory).free < LOW_SPACE
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a sibling temporary path to write; renamed over `path` only when the block succeeds.
    The name is unique per writer, so processes writing the same file at once (every DDP rank
    saving the search split) never rename each other's temporary away. A write that fails on a full
    disk raises `DiskFullError`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    except (OSError, RuntimeError) as e:
        if isinstance(e, DiskFullError) or not _disk_full(e, path.parent):
            raise
        usage = shutil.disk_usage(path.parent)
        raise DiskFullError(f"{path}: the disk is full ({usage.free / 2**20:,.0f} MiB free of "
                            f"{usage.total / 2**30:,.1f} GiB on {path.parent}); free some space or move the run "
                            f"(hydra.run.dir), then re-run the identical command: it continues from the last "
                            f"complete checkpoint") from None
    finally:
        tmp.unlink(missing_ok=True)


def remove_orphans(directory: str | Path) -> list[Path]:
    """Delete the temporaries a killed writer left in `directory` (call it holding the run's lock)."""
    orphans = sorted(Path(directory).glob(TMP_GLOB))
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_yaml(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, yaml.safe_dump(data, default_flow_style=None, sort_keys=False))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file, read in chunks (supernet checkpoints reach gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: str | Path, what: str, keys: tuple[str, ...] = (), fix: str = "") -> dict:
    """A JSON object written by this project, with the keys it must hold; anything else (truncated,
    empty, edited) is one ValueError naming the file and saying what to do (`fix`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable {what} (empty or truncated: {e}); {fix}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a {what} (a JSON {type(data).__name__}, not an object); {fix}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{path}: not a {what} (no {', '.join(map(repr, missing))}); {fix}")
    return data
