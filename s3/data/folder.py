"""A user's own images in the ImageFolder layout (`data=folder data.root=/path`): `train/<class>/*`
and `val/<class>/*`. The classes are counted from the folders, the search split is held out of
train/ as for ImageNet, and the image size, normalisation and augmentation are knobs (defaults:
the space's image size, ImageNet's mean and std, ImageNet's augmentation)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from s3.data.imagenet import ImageNetDataModule

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def count_classes(root: str | Path) -> int:
    """The class folders of `<root>/train` (0 where there is no such folder: the data module's
    check then says what is missing). The config's `${folder_classes:${data.root}}`."""
    train = Path(root) / "train"
    return sum(1 for p in train.iterdir() if p.is_dir()) if train.is_dir() else 0


class FolderDataModule(ImageNetDataModule):
    test_split = "val/ (the folder data set's validation split)"

    def __init__(self, root: str, img_size: int = 224, num_classes: int | None = None,
                 mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                 **kw):
        super().__init__(root=root, img_size=img_size, num_classes=num_classes or count_classes(root), **kw)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"data.mean={list(mean)}, data.std={list(std)}: three numbers each (RGB), std > 0")
        self.mean, self.std = tuple(mean), tuple(std)

    def check(self, stage: str | None = None) -> None:
        """The layout, before anything is built: each split a folder of class folders only, none of
        them empty, and the same classes in both."""
        classes = {}
        for split in ("val",) if stage == "validate" else ("train", "val"):
            d = self.root / split
            if not d.is_dir():
                raise FileNotFoundError(f"data.root={self.root}: no {split}/ folder; expected {self.root}/train/<class>/* "
                                        f"and {self.root}/val/<class>/* (ImageFolder layout)")
            loose = sorted(p.name for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if loose:
                raise ValueError(f"{d}: images directly in {split}/ ({loose[0]}, ...) beside or instead of class "
                                 f"folders; put every image in {split}/<class>/")
            folders = sorted(p for p in d.iterdir() if p.is_dir())
            if not folders:
                raise FileNotFoundError(f"{d}: no class folders; expected {d}/<class>/*")
            for folder in folders:
                if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in folder.rglob("*") if f.is_file()):
                    raise ValueError(f"{folder}: an empty class (no image files {IMAGE_SUFFIXES[:3]}...); remove the "
                                     f"folder or add its images")
            classes[split] = [f.name for f in folders]
        if "train" in classes and classes["train"] != classes["val"]:
            differ = sorted(set(classes["train"]) ^ set(classes["val"]))[:3]
            raise ValueError(f"{self.root}: train/ and val/ hold different classes (e.g. {differ}); the labels would "
                             f"not match")

    def normalisation(self) -> tuple[tuple, tuple]:
        return self.mean, self.std

    def preprocessing(self) -> dict:
        return {**super().preprocessing(), "mean": list(self.mean), "std": list(self.std)}
