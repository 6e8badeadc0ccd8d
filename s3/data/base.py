"""Common shape of the data modules: train (minus the search split), search split, validation."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from s3.data.seeded import KeyedCollate, KeyedSamples, sample_key
from s3.data.splits import save_split, search_split, subset


def resume_position(trainer, batch_size: int, batches: int) -> tuple[int, int]:
    """(epoch, samples per rank already trained in it) of a run at the trainer's optimizer step, so
    that a run stopped in the middle of an epoch (SIGTERM, a step checkpoint, an unreadable image)
    continues with the next batch, as the uninterrupted run would."""
    step = trainer.global_step
    if batches < 1:
        return trainer.current_epoch, 0
    steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
    epoch, done = divmod(step, steps_per_epoch)
    return epoch, batch_size * done * trainer.accumulate_grad_batches


class ResumableSampler(DistributedSampler):
    """What the training samplers share: they shard by rank themselves (being `DistributedSampler`s,
    Lightning uses them as they are under DDP), skip what a restored epoch already trained on, and
    yield `(index, key)`: the key seeds the sample's augmentation (`s3.data.seeded`).

    Where a restored epoch starts follows from the restored optimizer step: loader workers fetch
    their first indices as soon as the iterator exists, which for a restored run is before
    Lightning calls `set_epoch` (and the iterator must not exist before the restore:
    `RecipeModule.total_steps`)."""

    datamodule: ClassificationDataModule | None = None
    key_seed: int = 0

    def start(self) -> int:
        """Samples of this rank's epoch to skip; a restored run also takes its epoch from its step."""
        dm = self.datamodule
        if dm is None or dm.trainer is None:
            return 0
        epoch, done = resume_position(dm.trainer, dm.batch_size, len(self) // dm.batch_size)
        if epoch > self.epoch:  # restored at an epoch boundary: Lightning sets the epoch after iterating
            self.epoch = epoch
        return done if epoch == self.epoch else 0

    def keyed(self, indices: list[int], start: int) -> Iterator[tuple[int, int]]:
        """This rank's indices of the epoch with their keys, from `start`."""
        for position, index in enumerate(indices[start:], start):
            yield index, sample_key(self.key_seed, self.epoch, self.rank, position)


class EpochSeededSampler(ResumableSampler):
    """A shuffling sampler whose order is a function of (seed, epoch) alone (Lightning calls
    `set_epoch`): a resumed run sees the batches the uninterrupted one would."""

    def __init__(self, data: Dataset, seed: int, num_replicas: int = 1, rank: int = 0, datamodule=None,
                 key_seed: int = 0):
        self.n, self.seed, self.epoch = len(data), seed, 0
        self.num_replicas, self.rank, self.datamodule, self.key_seed = num_replicas, rank, datamodule, key_seed
        self.num_samples = math.ceil(self.n / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        start = self.start()
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        order += order[: self.num_samples * self.num_replicas - self.n]  # pad to a multiple of the ranks
        return self.keyed(order[self.rank::self.num_replicas], start)

    def __len__(self) -> int:
        return self.num_samples


class RepeatedAugmentationSampler(RepeatAugSampler, ResumableSampler):
    """timm's repeated-augmentation sampler (DeiT, AutoFormer): every image appears `num_repeats`
    times per epoch, each copy on another rank, with its own augmentation."""

    def __init__(self, *args, datamodule=None, key_seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.datamodule, self.key_seed = datamodule, key_seed

    def __iter__(self):
        start = self.start()
        return self.keyed(list(super().__iter__()), start)


class ClassificationDataModule(L.LightningDataModule):
    """Subclasses implement `_train_datasets()` -> (train_aug, train_eval, labels) and
    `_val_dataset()`; `setup("validate")` builds only the validation side (an evaluation of
    ImageNet's val/ never lists train/).

    The search split is held out of the whole training set first; `max_train` then keeps that many
    of the remaining training images and `max_val` that many validation images (seeded subsets,
    `split_seed`), so a smaller training budget never changes the search split. `seed` seeds the
    augmentation (`s3.data.seeded`); `split_seed` the split and the data order."""

    num_classes: int
    img_size: int
    # What `trainer.test` (train.py's test=true) evaluates on: the validation loader. Named so that a
    # result called test/top1 says which images it is (subclasses name their data set's split).
    test_split = "the validation split (this data set has no separate test split)"
    per_sample_random = False  # whether the data set's own per-image transform draws random numbers

    def __init__(self, batch_size: int = 128, eval_batch_size: int | None = None, num_workers: int = 0,
                 search_per_class: int = 100, split_seed: int = 0, split_dir: str | None = None,
                 pin_memory: bool = False, num_classes: int | None = None, repeated_aug: int = 0,
                 max_train: int | None = None, max_val: int | None = None, seed: int = 0):
        super().__init__()
        if num_classes is not None:
            self.num_classes = num_classes
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size}: must be >= 1 (an integer)")
        for name, value in (("max_train", max_train), ("max_val", max_val)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"data.{name}={value}: the number of {name[4:]} images to use, an integer >= 1, "
                                 f"or null for all")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.search_per_class, self.split_seed, self.split_dir = search_per_class, split_seed, split_dir
        if repeated_aug < 0 or repeated_aug == 1:
            raise ValueError(f"data.repeated_aug={repeated_aug}: the number of augmented copies per image and epoch "
                             f"(DeiT: 3), or 0 for off")
        self.repeated_aug = repeated_aug
        self.max_train, self.max_val, self.seed = max_train, max_val, seed
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
            val = self._val_dataset()
            self.val_set = Subset(val, subset(len(val), self.max_val, self.split_seed, "data.max_val"))
        if stage == "validate" or self.train_set is not None:
            return
        train_aug, train_eval, labels = self._train_datasets()
        train_idx, search_idx = search_split(labels, self.search_per_class, self.split_seed)
        train_idx = [train_idx[i] for i in subset(len(train_idx), self.max_train, self.split_seed, "data.max_train",
                                                  f" after the search split of {len(search_idx):,}")]
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

    def _loader(self, ds, batch_size: int, sampler: Sampler | None = None, drop_last: bool = False,
                collate_fn=None) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0, collate_fn=collate_fn)

    def train_sampler(self) -> Sampler:
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        if not self.repeated_aug:
            return EpochSeededSampler(self.train_set, self.split_seed, world, rank, datamodule=self,
                                      key_seed=self.seed)
        return RepeatedAugmentationSampler(self.train_set, num_replicas=world, rank=rank,
                                           num_repeats=self.repeated_aug, datamodule=self, key_seed=self.seed)

    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch of this rank's training loader (full batches only)."""
        accumulate = self.trainer.accumulate_grad_batches if self.trainer else 1
        return math.ceil((len(self.train_sampler()) // self.batch_size) / accumulate)

    def collate(self, train: bool):
        """The batch transform of in-memory data sets (None: the default collate)."""
        return None

    def preprocessing(self) -> dict:
        """What the evaluation transform does to an image, in the keys of timm's `pretrained_cfg`
        (`input_size`, `mean`, `std`, `crop_pct`, `interpolation`): what an exported model's user
        must do to their images."""
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader(KeyedSamples(self.train_set, self.per_sample_random), self.batch_size,
                            self.train_sampler(), drop_last=True, collate_fn=KeyedCollate(self.collate(True)))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, collate_fn=self.collate(False))

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def search_dataloader(self) -> DataLoader:
        return self._loader(self.search_set, self.eval_batch_size, collate_fn=self.collate(False))
