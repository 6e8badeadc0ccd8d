"""Common shape of the data modules: train (minus the search split), search split, validation."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import lightning as L
import torch
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from s3.data.splits import save_split, search_split


def trained_in_epoch(trainer, batch_size: int, batches: int) -> int:
    """Samples (per rank) of the current epoch that a restored run has already trained on, so that
    a run stopped in the middle of an epoch (SIGTERM, a step checkpoint) continues with the next
    batch, as the uninterrupted run would. Read when an epoch's iteration starts, after Lightning
    restored the step counter: 0 at every epoch boundary."""
    if batches < 1:
        return 0
    steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
    done = (trainer.global_step - trainer.current_epoch * steps_per_epoch) * trainer.accumulate_grad_batches
    return batch_size * done if 0 < done < batches else 0


class ResumableSampler(DistributedSampler):
    """What the training samplers share: they shard by rank themselves (being `DistributedSampler`s,
    Lightning uses them as they are under DDP) and skip what a restored epoch already trained on."""

    datamodule: ClassificationDataModule | None = None

    def skip(self) -> int:
        dm = self.datamodule
        if dm is None or dm.trainer is None:
            return 0
        return trained_in_epoch(dm.trainer, dm.batch_size, len(self) // dm.batch_size)


class EpochSeededSampler(ResumableSampler):
    """A shuffling sampler whose order is a function of (seed, epoch) alone (Lightning calls
    `set_epoch`): a resumed run sees the batches the uninterrupted one would."""

    def __init__(self, data: Dataset, seed: int, num_replicas: int = 1, rank: int = 0, datamodule=None):
        self.n, self.seed, self.epoch = len(data), seed, 0
        self.num_replicas, self.rank, self.datamodule = num_replicas, rank, datamodule
        self.num_samples = math.ceil(self.n / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        order += order[: self.num_samples * self.num_replicas - self.n]  # pad to a multiple of the ranks
        return iter(order[self.rank::self.num_replicas][self.skip():])

    def __len__(self) -> int:
        return self.num_samples


class RepeatedAugmentationSampler(RepeatAugSampler, ResumableSampler):
    """timm's repeated-augmentation sampler (DeiT, AutoFormer): every image appears `num_repeats`
    times per epoch, each copy on another rank, with its own augmentation."""

    def __init__(self, *args, datamodule=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.datamodule = datamodule

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip():])


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

    def split_identity(self) -> dict:
        """What defines the held-out search split: the data, its settings and a hash of its indices."""
        indices = self.search_set.indices
        return {"data": type(self).__name__, "per_class": self.search_per_class, "seed": self.split_seed,
                "images": len(indices), "sha256": hashlib.sha256(json.dumps(list(indices)).encode()).hexdigest()}

    def state_dict(self) -> dict:
        """Saved in every checkpoint (Lightning), so that a copied checkpoint still knows which
        images its supernet never trained on."""
        return {"search_split": self.split_identity()} if self.search_set is not None else {}

    def _loader(self, ds, batch_size: int, sampler: Sampler | None = None, drop_last: bool = False) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0, collate_fn=self.collate(sampler is not None))

    def train_sampler(self) -> Sampler:
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        if not self.repeated_aug:
            return EpochSeededSampler(self.train_set, self.split_seed, world, rank, datamodule=self)
        return RepeatedAugmentationSampler(self.train_set, num_replicas=world, rank=rank,
                                           num_repeats=self.repeated_aug, datamodule=self)

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
