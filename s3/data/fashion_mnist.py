"""Fashion-MNIST, the embedded default: 28x28 grey images padded to 32x32, three channels.

Looks in `root` when given, else in Debian's `dataset-fashion-mnist`
(/usr/share/datasets/fashion-mnist); downloads through torchvision into `root` (or ./data) when
`download=true` and neither holds the files.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Optional

import torch

from s3.data.base import ClassificationDataModule
from s3.data.memory import BatchTransform, TensorImages

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MEAN, STD = (0.2860,), (0.3530,)


def _find(directory: Path, name: str) -> Optional[Path]:
    for sub in ("", "FashionMNIST/raw", "fashion-mnist"):
        for suffix in (".gz", ""):
            p = directory / sub / f"{name}{suffix}"
            if p.is_file():
                return p
    return None


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (the MNIST format), gzipped or not, as a uint8 tensor."""
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 8 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8)
    if data.numel() != torch.Size(shape).numel():
        raise ValueError(f"{path} is truncated: header says {shape}, found {data.numel()} bytes")
    return data.view(shape)


class FashionMNISTDataModule(ClassificationDataModule):
    num_classes = 10

    def __init__(self, root: Optional[str] = None, download: bool = False, img_size: int = 32,
                 max_train: Optional[int] = None, max_val: Optional[int] = None, num_classes: int = 10,
                 augment: bool = True, **kw):
        super().__init__(**kw)
        if num_classes != 10:
            raise ValueError(f"data.num_classes={num_classes}: Fashion-MNIST has 10 classes")
        if img_size < 28:
            raise ValueError(f"data.img_size={img_size}: Fashion-MNIST images are 28x28; use >= 28 (32 pads by 2)")
        self.root, self.download, self.img_size = root, download, img_size
        self.max_train, self.max_val, self.augment = max_train, max_val, augment

    def _candidates(self) -> list[Path]:
        return [Path(self.root)] if self.root else [DEBIAN_DIR]  # an explicit root is never second-guessed

    def _directory(self) -> Optional[Path]:
        for d in self._candidates():
            if all(_find(d, n) for pair in FILES.values() for n in pair):
                return d
        return None

    def check(self) -> None:
        if self._directory() is None and not self.download:
            looked = ", ".join(str(p) for p in self._candidates())
            raise FileNotFoundError(
                f"Fashion-MNIST not found (looked in {looked}). Install it with "
                f"`apt-get install dataset-fashion-mnist`, set data.root=/dir/with/the/idx/files, "
                f"or allow data.download=true"
            )

    def _load(self, split: str) -> TensorImages:
        d = self._directory()
        if d is None:
            self.check()
            import torchvision

            root = Path(self.root or "data")
            torchvision.datasets.FashionMNIST(str(root), train=split == "train", download=True)
            self.root, d = str(root), root
        images = read_idx(_find(d, FILES[split][0]))
        labels = read_idx(_find(d, FILES[split][1])).long()
        limit = self.max_train if split == "train" else self.max_val
        if limit:
            images, labels = images[:limit], labels[:limit]
        pad = (self.img_size - images.shape[-1]) // 2
        extra = self.img_size - images.shape[-1] - pad
        images = torch.nn.functional.pad(images.unsqueeze(1), (pad, extra, pad, extra))
        return TensorImages(images, labels)

    def _datasets(self):
        train, val = self._load("train"), self._load("test")
        return train, train, val, train.labels

    def collate(self, train: bool):
        return BatchTransform(MEAN, STD, train=train and self.augment, flip=True)
