"""Fashion-MNIST, the embedded default: 28x28 grey images padded to 32x32, three channels.

Looks in `root` when given, else in Debian's `dataset-fashion-mnist`
(/usr/share/datasets/fashion-mnist); downloads through torchvision into `root` (or ./data) when
`download=true` and neither holds the files.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import torch

from s3.data.memory import BatchTransform, InMemoryDataModule

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MEAN, STD = (0.2860,), (0.3530,)


def _find(directory: Path, name: str) -> Path | None:
    for sub in ("", "FashionMNIST/raw", "fashion-mnist"):
        for suffix in (".gz", ""):
            p = directory / sub / f"{name}{suffix}"
            if p.is_file():
                return p
    return None


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (the MNIST format), gzipped or not, as a uint8 tensor. Decoded once per process
    and file version (a space search sets up its data for every iteration): callers must not
    modify the tensor in place."""
    stat = Path(path).stat()
    return _decode_idx(Path(path).resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _decode_idx(path: Path, mtime_ns: int, size: int) -> torch.Tensor:
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 8 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8)
    if data.numel() != torch.Size(shape).numel():
        raise ValueError(f"{path} is truncated: header says {shape}, found {data.numel()} bytes")
    return data.view(shape)


class FashionMNISTDataModule(InMemoryDataModule):
    num_classes = 10
    native_size = 28

    def __init__(self, root: str | None = None, download: bool = False, img_size: int = 32,
                 num_classes: int = 10, augment: bool = True, reprob: float = 0.0, **kw):
        super().__init__(**kw)
        if num_classes != 10:
            raise ValueError(f"data.num_classes={num_classes}: Fashion-MNIST has 10 classes")
        if img_size < 28:
            raise ValueError(f"data.img_size={img_size}: Fashion-MNIST images are 28x28; use >= 28 (32 pads by 2)")
        if not 0.0 <= reprob <= 1.0:
            raise ValueError(f"data.reprob={reprob}: the random-erasing probability must be in [0, 1]")
        self.root, self.download, self.img_size, self.augment, self.reprob = root, download, img_size, augment, reprob

    def _candidates(self) -> list[Path]:
        return [Path(self.root)] if self.root else [DEBIAN_DIR]  # an explicit root is never second-guessed

    def _directory(self) -> Path | None:
        for d in self._candidates():
            if all(_find(d, n) for pair in FILES.values() for n in pair):
                return d
        return None

    def check(self, stage: str | None = None) -> None:
        if self._directory() is None and not self.download:
            looked = ", ".join(str(p) for p in self._candidates())
            raise FileNotFoundError(
                f"Fashion-MNIST not found (looked in {looked}). Install it with "
                f"`apt-get install dataset-fashion-mnist`, set data.root=/dir/with/the/idx/files, "
                f"or allow data.download=true"
            )

    def _load(self, train: bool):
        split = "train" if train else "test"
        d = self._directory()
        if d is None:
            self.check()
            import torchvision

            root = Path(self.root or "data")
            torchvision.datasets.FashionMNIST(str(root), train=train, download=True)
            self.root, d = str(root), root
        images = read_idx(_find(d, FILES[split][0]))
        labels = read_idx(_find(d, FILES[split][1])).long()
        pad = (self.img_size - images.shape[-1]) // 2
        extra = self.img_size - images.shape[-1] - pad
        return torch.nn.functional.pad(images.unsqueeze(1), (pad, extra, pad, extra)), labels

    def collate(self, train: bool):
        return BatchTransform(MEAN, STD, train=train and self.augment, flip=True, erase=self.reprob)
