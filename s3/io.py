"""Atomic file writes: an interrupted run never leaves a truncated file behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write to a sibling temporary file, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def write_yaml(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, yaml.safe_dump(data, default_flow_style=None, sort_keys=False))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """`torch.save` through a temporary file and a rename."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path
