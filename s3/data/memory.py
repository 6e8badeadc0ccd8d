"""Small image sets kept in memory as uint8 tensors, augmented and normalised per batch.

On the embedded default (Fashion-MNIST, 2 CPU cores) per-image PIL transforms would dominate a
training step; a vectorised collate keeps data loading off the critical path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.data.random_erasing import RandomErasing
from torch import Tensor
from torch.utils.data import Dataset

from s3.data.base import ClassificationDataModule


class TensorImages(Dataset):
    """(N, C, H, W) uint8 images and (N,) labels."""

    def __init__(self, images: Tensor, labels: Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"TensorImages wants (N, C, H, W) uint8 images and N labels, got {tuple(images.shape)} "
                             f"{images.dtype} and {len(labels)} labels")
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.images[i], self.labels[i]


class BatchTransform:
    """Collate: stack, optional random crop (zero padding `pad`) + horizontal flip, normalise,
    optional random erasing (timm's, probability `erase`, per image), to 3 channels. Its random
    draws come from the global generators, which the training loader seeds per batch
    (`s3.data.seeded.KeyedCollate`)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], train: bool, pad: int = 2, flip: bool = True,
                 channels: int = 3, erase: float = 0.0):
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.train, self.pad, self.flip, self.channels = train, pad, flip, channels
        self.erase = RandomErasing(erase, mode="pixel", device="cpu") if train and erase > 0 else None

    def __call__(self, batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        x = torch.stack([b[0] for b in batch]).float().div_(255)
        y = torch.stack([b[1] for b in batch])
        if self.train and self.pad:
            B, _, H, W = x.shape
            padded = torch.nn.functional.pad(x, (self.pad,) * 4)
            offsets = torch.randint(0, 2 * self.pad + 1, (B, 2))
            x = torch.stack([padded[i, :, dy:dy + H, dx:dx + W] for i, (dy, dx) in enumerate(offsets.tolist())])
        if self.train and self.flip:
            flip = torch.rand(len(x)) < 0.5
            x[flip] = x[flip].flip(-1)
        x = (x - self.mean) / self.std
        if self.erase is not None:
            x = self.erase(x)
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1).contiguous()
        return x, y


class InMemoryDataModule(ClassificationDataModule):
    """A data set small enough to hold as uint8 tensors, augmented per batch by `collate`.
    Subclasses implement `_load(train) -> (images, labels)`."""
    test_split = ("the official test split, which is also the validation split (these data sets have no "
                  "separate validation split)")

    def _load(self, train: bool) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def preprocessing(self) -> dict:
        t = self.collate(False)
        channels = t.mean.numel()
        mean, std = ([round(v, 6) for v in x.flatten().tolist()] * (3 // channels) for x in (t.mean, t.std))
        return {"input_size": [3, self.img_size, self.img_size], "mean": mean, "std": std, "crop_pct": 1.0, "interpolation": "none",
                "note": (f"{self.native_size}x{self.native_size} images zero-padded to {self.img_size}; "
                         if self.native_size < self.img_size else "")
                        + ("grey images repeated over 3 channels" if channels == 1 else "RGB")}

    native_size = 32  # the data set's own image side

    def _split(self, train: bool) -> TensorImages:
        return TensorImages(*self._load(train))

    def _train_datasets(self):
        train = self._split(True)
        return train, train, train.labels

    def _val_dataset(self):
        return self._split(False)
