"""CIFAR-10/100 through torchvision (downloaded only when asked: `data.download=true`), kept in memory."""

from __future__ import annotations

import torch

from s3.data.memory import BatchTransform, InMemoryDataModule

FOLDERS = {10: "cifar-10-batches-py", 100: "cifar-100-python"}  # what torchvision reads under data.root
STATS = {10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
         100: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}


class CIFARDataModule(InMemoryDataModule):
    img_size = 32

    def __init__(self, root: str = "data", num_classes: int = 10, download: bool = False, img_size: int = 32, **kw):
        super().__init__(**kw)
        if img_size != 32:
            raise ValueError(f"data.img_size={img_size}: CIFAR images are 32x32 (use a space with img_size 32)")
        if num_classes not in STATS:
            raise ValueError(f"data.num_classes={num_classes}: CIFAR has 10 or 100 classes")
        self.root, self.num_classes, self.download = root, num_classes, download

    def _dataset(self, train: bool):
        import torchvision

        cls = torchvision.datasets.CIFAR10 if self.num_classes == 10 else torchvision.datasets.CIFAR100
        try:
            return cls(self.root, train=train, download=self.download)
        except RuntimeError:
            raise FileNotFoundError(
                f"data.root={self.root}: CIFAR-{self.num_classes} is not there (torchvision's "
                f"{FOLDERS[self.num_classes]}/ folder); point data.root at the directory that holds it, or set "
                f"data.download=true to download it there (needs internet)") from None
        except OSError as e:  # the download itself: no network, a proxy, a full disk
            reason = getattr(e, "reason", None) or e.strerror or e
            raise FileNotFoundError(
                f"data.download=true: CIFAR-{self.num_classes} could not be downloaded into data.root={self.root} "
                f"({reason}); download it where there is internet and point data.root at it") from None

    def check(self, stage: str | None = None) -> None:
        if not self.download:
            self._dataset(train=False)

    def _load(self, train: bool):
        ds = self._dataset(train)
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)

    def collate(self, train: bool):
        mean, std = STATS[self.num_classes]
        return BatchTransform(mean, std, train=train, pad=4, flip=True)
