"""Candidate evaluation shared by every search: top-1 of a subnet with inherited supernet weights.

The split is decoded and transformed once and kept as tensors (`CachedSplit`); a candidate costs
`set_arch` plus forward passes under `torch.inference_mode()`, nothing else. Results are cached per
`Arch`. Under a multi-process Fabric the new candidates of a call are dealt round-robin to the ranks
and the results summed across them with `Fabric.all_reduce`, so every rank ends with the same cache.
A one-process CPU search can instead score with `workers` forked processes of one thread each: on
small models they measure more archs per second than one process with every thread, and give the
same values (the forward passes split no reduction over threads).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import torch
from torch import Tensor
from typing_extensions import NotRequired

from s3.constraints import Constraints
from s3.io import atomic_torch_save
from s3.models import Supernet
from s3.space import Arch

if TYPE_CHECKING:
    from lightning.fabric import Fabric

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class CachedSplit:
    """Transformed images (N, C, H, W) and labels (N,), in memory or memory-mapped from a file."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_loader(cls, loader, dtype: str = "float32", cache_file: str | Path | None = None) -> CachedSplit:
        """Run `loader` once. With `cache_file` the tensors are saved there (atomically) and read back
        memory-mapped, so an ImageNet-size split costs disk, not RAM, and later runs skip decoding."""
        if dtype not in DTYPES:
            raise ValueError(f"search.split_dtype={dtype}: allowed {sorted(DTYPES)}")
        if cache_file is not None and Path(cache_file).is_file():
            return cls._load(cache_file)
        xs, ys = [], []
        for x, y in loader:
            xs.append(x.to(DTYPES[dtype]))
            ys.append(y)
        if not xs:
            raise ValueError("the search split is empty: set data.search_per_class >= 1")
        split = cls(torch.cat(xs), torch.cat(ys))
        if cache_file is None:
            return split
        atomic_torch_save({"images": split.images, "labels": split.labels}, cache_file)
        return cls._load(cache_file)

    @classmethod
    def _load(cls, path: str | Path) -> CachedSplit:
        d = torch.load(path, weights_only=True, mmap=True)
        return cls(d["images"], d["labels"])

    def batches(self, batch_size: int, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
        for i in range(0, len(self), batch_size):
            x = self.images[i:i + batch_size].to(device, non_blocking=True).float()
            yield x, self.labels[i:i + batch_size].to(device, non_blocking=True)


class ArchRecord(TypedDict):
    """One evaluated arch, as every search ranks, saves and reports it."""

    arch: Arch
    params: int
    macs: int
    latency_ms: NotRequired[float]  # predicted, under a latency bound
    top1: float  # % on the evaluated split, with weights inherited from the supernet
    loss: float  # mean cross-entropy there


class CandidateEvaluator:
    """`evaluate(archs)` -> one record per arch: params, MACs, top1 (%), loss on `split`. With
    `fabric` (launched, one process per device) the ranks share the work; without it, one process,
    or `workers` forked single-thread processes on CPU."""

    def __init__(self, supernet: Supernet, split: CachedSplit, constraints: Constraints, batch_size: int = 256,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 fabric: Fabric | None = None, workers: int = 1):
        if batch_size < 1:
            raise ValueError(f"search.batch_size={batch_size}: must be >= 1")
        if workers < 1:
            raise ValueError(f"search.workers={workers}: must be >= 1")
        self.supernet, self.split, self.constraints = supernet.eval(), split, constraints
        self.batch_size, self.autocast, self.fabric = batch_size, autocast, fabric
        self.device = next(supernet.parameters()).device
        if workers > 1 and (self.device.type != "cpu" or (fabric is not None and fabric.world_size > 1)):
            raise ValueError(f"search.workers={workers}: scoring processes serve a one-process CPU search "
                             f"(this one runs on {self.device.type} with {self.world_size} process(es)); set search.workers=1")
        self.workers = workers
        self._pool = None  # the scoring processes, forked at the first call that has work for them
        self._cache: dict[Arch, ArchRecord] = {}  # in evaluation order

    def __contains__(self, arch: Arch) -> bool:
        return arch in self._cache

    def __len__(self) -> int:
        """How many distinct archs were evaluated."""
        return len(self._cache)

    @property
    def world_size(self) -> int:
        return self.fabric.world_size if self.fabric is not None else 1

    def record(self, arch: Arch) -> ArchRecord:
        return self._cache[arch]

    def records(self) -> list[ArchRecord]:
        """Every evaluated arch's record, in evaluation order."""
        return list(self._cache.values())

    def evaluate(self, archs: Sequence[Arch], progress: Callable[[int], None] | None = None) -> list[ArchRecord]:
        todo = list(dict.fromkeys(a for a in archs if a not in self._cache))
        costs = {a: self.constraints.cost(a) for a in todo}
        for a, cost in costs.items():  # costs are checked before any forward pass
            bad = self.constraints.violations(cost)
            if bad:
                raise ValueError(f"{a} violates the constraints ({'; '.join(bad)}); searches filter before evaluating")
        rank = self.fabric.global_rank if self.fabric is not None else 0
        world = self.world_size
        # (top1, loss) per new arch; a row is filled by the one rank that measures it, zeros elsewhere,
        # so the sum over ranks is every measured value exactly (x + 0.0 == x in float64)
        measured = torch.zeros(len(todo), 2, dtype=torch.float64, device=self.device)
        mine = range(rank, len(todo), world)
        for i, m in self._measure_all([todo[i] for i in mine]):
            measured[mine[i], 0], measured[mine[i], 1] = m["top1"], m["loss"]
            if progress:  # rank zero's bar: its own archs as they come...
                progress(1)
        if world > 1 and todo:  # every rank holds the same cache, so all of them skip together
            measured = self.fabric.all_reduce(measured, reduce_op="sum")
            if progress:  # ...and the other ranks' once summed: every candidate counted once
                progress(len(todo) - len(mine))
        for a, (top1, loss) in zip(todo, measured.tolist()):
            self._cache[a] = {"arch": a, **costs[a], "top1": top1, "loss": loss}
        return [self._cache[a] for a in archs]

    def _measure_all(self, archs: list[Arch]) -> Iterator[tuple[int, dict[str, float]]]:
        """(index, measurement) of every arch, in this process or, with `workers`, in the scoring
        processes (nothing crosses a pipe but an arch and two floats); the order of the pairs is
        the order they finish in. The workers take the costliest archs first, so that none idles
        long at the end of a call."""
        if self.workers == 1 or len(archs) < 2:
            yield from ((i, self.measure(a)) for i, a in enumerate(archs))
            return
        if self._pool is None:  # forked once, at the first call: they inherit the supernet and the split
            self._pool = multiprocessing.get_context("fork").Pool(self.workers, _start_worker, (self,))
        costliest_first = sorted(enumerate(archs), key=lambda job: -self.constraints.cost(job[1])["macs"])
        yield from self._pool.imap_unordered(_measure_in_worker, costliest_first)

    def close(self) -> None:
        """Stops the scoring processes, if any were started (a later call starts new ones)."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> CandidateEvaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @torch.inference_mode()
    def measure(self, arch: Arch, split: CachedSplit | None = None) -> dict[str, float]:
        """Top-1 (%) and mean cross-entropy of `arch` with inherited weights on `split`. Counted by
        hand, not with torchmetrics: one argmax comparison per batch is all top-1 needs here, and a
        metric object's state, update and sync per candidate would only add overhead; the ranks
        split the candidates, not the images, so nothing needs syncing."""
        split = split or self.split
        self.supernet.set_arch(arch)
        correct, loss = 0, 0.0
        with self.autocast():
            for x, y in split.batches(self.batch_size, self.device):
                logits = self.supernet(x).float()
                correct += int((logits.argmax(-1) == y).sum())
                loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
        return {"top1": 100.0 * correct / len(split), "loss": loss / len(split)}

    # -- resumable state ----------------------------------------------------------------------------
    def state_dict(self) -> list[dict]:
        return [{**r, "arch": r["arch"].to_dict()} for r in self._cache.values()]

    def load_state_dict(self, records: list[dict]) -> None:
        self._cache = {}
        for r in records:
            arch = Arch.from_dict(r["arch"])
            self._cache[arch] = {**r, "arch": arch}


_WORKER: CandidateEvaluator | None = None  # in a scoring process: the evaluator it was forked from


def _start_worker(evaluator: CandidateEvaluator) -> None:
    """A scoring process's start: one intra-op thread, and the evaluator it inherited (a fork
    passes it in memory, unpickled)."""
    global _WORKER
    torch.set_num_threads(1)
    _WORKER = evaluator


def _measure_in_worker(job: tuple[int, Arch]) -> tuple[int, dict[str, float]]:
    i, arch = job
    return i, _WORKER.measure(arch)
