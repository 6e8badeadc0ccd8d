"""Common shape of the data modules: train (minus the search split), search split, validation."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from s3.data.splits import save_split, search_split


class EpochSeededSampler(Sampler[int]):
    """A shuffling sampler whose order is a function of (seed, epoch) alone: Lightning calls
    `set_epoch`, so a run resumed at an epoch boundary sees the same order as an uninterrupted one.
    (Under DDP Lightning swaps in its DistributedSampler, which is seeded the same way.)"""

    def __init__(self, data: Dataset, seed: int):
        self.n, self.seed, self.epoch = len(data), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class ClassificationDataModule(L.LightningDataModule):
    """Subclasses implement `_datasets()` -> (train_aug, train_eval, val, labels_of_train)."""

    num_classes: int
    img_size: int

    def __init__(self, batch_size: int = 128, eval_batch_size: int | None = None, num_workers: int = 0,
                 search_per_class: int = 100, split_seed: int = 0, split_dir: str | None = None,
                 pin_memory: bool = False, num_classes: int | None = None):
        super().__init__()
        if num_classes is not None:
            self.num_classes = num_classes
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size}: must be >= 1")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.search_per_class, self.split_seed, self.split_dir = search_per_class, split_seed, split_dir
        self.train_set = self.search_set = self.val_set = None

    def check(self) -> None:
        """Raise a clear error when the data set is missing; cheap, called before any model is built."""

    def _datasets(self) -> tuple[Dataset, Dataset, Dataset, list[int]]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_aug, train_eval, val, labels = self._datasets()
        train_idx, search_idx = search_split(labels, self.search_per_class, self.split_seed)
        self.train_set = Subset(train_aug, train_idx)
        self.search_set = Subset(train_eval, search_idx)
        self.val_set = val
        if self.split_dir:
            save_split(Path(self.split_dir) / "search_split.json", search_idx, self.search_per_class, self.split_seed)

    def _loader(self, ds, shuffle: bool, batch_size: int, drop_last: bool = False) -> DataLoader:
        sampler = EpochSeededSampler(ds, self.split_seed) if shuffle else None
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0, collate_fn=self.collate(shuffle))

    def collate(self, train: bool):
        return None

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True, self.batch_size, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def search_dataloader(self) -> DataLoader:
        return self._loader(self.search_set, False, self.eval_batch_size)
