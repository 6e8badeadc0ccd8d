"""The held-out search split: `per_class` training images of every class, chosen by seed.

S3 (like AutoFormer's subImageNet) ranks subnets on images the supernet never trained on and
reports only the final picks on the validation set, so the search split is carved out of train.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from s3.io import atomic_write_text


def search_split(labels: Sequence[int] | torch.Tensor, per_class: int, seed: int) -> tuple[list[int], list[int]]:
    """(train_minus_search, search) indices; deterministic in (labels, per_class, seed)."""
    labels = torch.as_tensor(labels)
    if per_class < 0:
        raise ValueError(f"data.search_per_class={per_class}: must be >= 0")
    g = torch.Generator().manual_seed(seed)
    search = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if per_class >= len(idx):
            raise ValueError(
                f"data.search_per_class={per_class}: class {c} has only {len(idx)} training images; "
                f"hold out fewer per class"
            )
        search += idx[torch.randperm(len(idx), generator=g)[:per_class]].tolist()
    search.sort()
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[search] = False
    return torch.nonzero(keep).flatten().tolist(), search


def subset(n: int, keep: int | None, seed: int, knob: str, after: str = "") -> list[int]:
    """`keep` of `n` positions (all for None), a seeded choice in increasing order."""
    if keep is None:
        return list(range(n))
    if keep > n:
        raise ValueError(f"{knob}={keep}: there are only {n:,} images{after}; use at most {n:,}, or null for all")
    g = torch.Generator().manual_seed(seed + 7919)
    return sorted(torch.randperm(n, generator=g)[:keep].tolist())


def save_split(path: str | Path, search: list[int], per_class: int, seed: int) -> None:
    """Write the search-split indices next to the run (atomically)."""
    atomic_write_text(path, json.dumps({"per_class": per_class, "seed": seed, "search_indices": search}))
