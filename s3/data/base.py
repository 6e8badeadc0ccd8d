"""Common shape of the data modules: train (minus the search split), search split, validation."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

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


class RepeatedAugmentationSampler(RepeatAugSampler, DistributedSampler):
    """timm's repeated-augmentation sampler (DeiT, AutoFormer): every image appears `num_repeats`
    times per epoch, each copy on another rank, with its own augmentation. It already shards by
    rank; being a `DistributedSampler` tells Lightning not to wrap it in a second sharding."""


class ClassificationDataModule(L.LightningDataModule):
    """Subclasses implement `_train_datasets()` -> (train_aug, train_eval, labels) and
    `_val_dataset()`; `setup("validate")` builds only the validation side (an evaluation of
    ImageNet's val/ never lists train/)."""

    num_classes: int
    img_size: int

    def __init__(self, batch_size: int = 128, eval_batch_size: int | None = None, num_workers: int = 0,
                 search_per_class: int = 100, split_seed: int = 0, split_dir: str | None = None,
                 pin_memory: bool = False, num_classes: int | None = None, repeated_aug: int = 0):
        super().__init__()
        if num_classes is not None:
            self.num_classes = num_classes
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size}: must be >= 1")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.search_per_class, self.split_seed, self.split_dir = search_per_class, split_seed, split_dir
        if repeated_aug < 0 or repeated_aug == 1:
            raise ValueError(f"data.repeated_aug={repeated_aug}: the number of augmented copies per image and epoch "
                             f"(DeiT: 3), or 0 for off")
        self.repeated_aug = repeated_aug
        self.train_set = self.search_set = self.val_set = None

    def check(self, stage: str | None = None) -> None:
        """Raise a clear error when the data set is missing; cheap, called before any model is
        built. `stage="validate"` checks only what validation reads."""

    def _train_datasets(self) -> tuple[Dataset, Dataset, list[int]]:
        raise NotImplementedError

    def _val_dataset(self) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.val_set is None:
            self.val_set = self._val_dataset()
        if stage == "validate" or self.train_set is not None:
            return
        train_aug, train_eval, labels = self._train_datasets()
        train_idx, search_idx = search_split(labels, self.search_per_class, self.split_seed)
        self.train_set = Subset(train_aug, train_idx)
        self.search_set = Subset(train_eval, search_idx)
        if self.split_dir:
            save_split(Path(self.split_dir) / "search_split.json", search_idx, self.search_per_class, self.split_seed)

    def _loader(self, ds, batch_size: int, sampler: Sampler | None = None, drop_last: bool = False) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0, collate_fn=self.collate(sampler is not None))

    def train_sampler(self) -> Sampler:
        if not self.repeated_aug:
            return EpochSeededSampler(self.train_set, self.split_seed)
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        return RepeatedAugmentationSampler(self.train_set, num_replicas=world, rank=rank,
                                           num_repeats=self.repeated_aug)

    def collate(self, train: bool):
        return None

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, self.train_sampler(), drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def search_dataloader(self) -> DataLoader:
        return self._loader(self.search_set, self.eval_batch_size)
