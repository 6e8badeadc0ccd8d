"""Augmentation randomness as a function of (seed, epoch, rank, position), not of a global RNG.

A resumed run restores the weights, the optimizer and the sampler's position, but not the global
RNGs of the loading processes, so crops, flips, RandAugment and random erasing drawn from them
would differ after a resume. Instead the training samplers hand out `(index, key)` pairs, where
the key names the sample's place in the run (seed, epoch, rank, position in the rank's epoch), and
every random augmentation of that sample (or of its batch, for the in-memory data sets whose
augmentation is a batch transform) is drawn inside `seeded(key)`. The same key gives the same
augmentation, in any process, before or after a resume; the copies of a repeated-augmentation
sampler get their own keys, so their augmentations differ.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate


def sample_key(seed: int, epoch: int, rank: int, position: int) -> int:
    """A 63-bit key for the `position`-th sample of `rank`'s epoch `epoch` of a run seeded `seed`."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{rank}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def batch_key(keys: Sequence[int]) -> int:
    digest = hashlib.blake2b(np.asarray(keys, dtype=np.int64).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@contextlib.contextmanager
def seeded(key: int) -> Iterator[None]:
    """torch's, numpy's and Python's global generators seeded from `key` inside the block, and
    restored after it: the augmentation libraries (torchvision, timm) draw from all three."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(key)
        random.seed(key)
        np.random.seed(key % (2**32))
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


class KeyedSamples(Dataset):
    """The training set as the training samplers index it: `(index, key)` gives the sample and its
    key, drawn inside `seeded(key)` when the data set's own transform is random (`per_sample`)."""

    def __init__(self, data: Dataset, per_sample: bool):
        self.data, self.per_sample = data, per_sample

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: tuple[int, int] | int):
        # a plain index: Lightning swapped in its own sequential sampler (trainer.overfit_batches)
        index, key = item if isinstance(item, tuple) else (item, item)
        if not self.per_sample:
            return (*self.data[index], key)
        with seeded(key):
            return (*self.data[index], key)


class KeyedCollate:
    """Drops the keys; a random batch transform (in-memory data) runs seeded by the batch's keys."""

    def __init__(self, transform: Callable | None):
        self.transform = transform

    def __call__(self, items: list[tuple]):
        keys = [item[-1] for item in items]
        samples = [item[:-1] for item in items]
        if self.transform is None:
            return default_collate(samples)
        with seeded(batch_key(keys)):
            return self.transform(samples)
