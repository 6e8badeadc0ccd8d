"""ImageNet-1k from the standard ImageFolder layout, with the DeiT/Swin training augmentation
(timm `create_transform`) and the official evaluation transform (resize 256 bicubic, crop 224)."""

from __future__ import annotations

from pathlib import Path

from s3.data.base import ClassificationDataModule
from s3.data.images import image_files, load_image, register_safe_posterize, verify_images


class ImageNetDataModule(ClassificationDataModule):
    """`verify=true` decodes every image of train/ and val/ before training and lists the files
    that cannot be read; without it, such a file stops training with one line naming it (last.ckpt
    holds the steps before it)."""
    test_split = "val/ (ILSVRC-2012's evaluation split, which is also the validation split)"

    per_sample_random = True  # RandAugment, random resized crop and erasing run per image

    def __init__(self, root: str = "data/imagenet", img_size: int = 224, num_classes: int = 1000,
                 auto_augment: str = "rand-m9-mstd0.5-inc1", reprob: float = 0.25, crop_pct: float = 224 / 256,
                 interpolation: str = "bicubic", verify: bool = False, **kw):
        super().__init__(**kw)
        self.root, self.img_size, self.num_classes = Path(root), img_size, num_classes
        self.auto_augment, self.reprob, self.crop_pct, self.interpolation = auto_augment, reprob, crop_pct, interpolation
        self.verify = verify

    def check(self, stage: str | None = None) -> None:
        for split in ("val",) if stage == "validate" else ("train", "val"):
            d = self.root / split
            if not d.is_dir() or not any(p.is_dir() for p in d.iterdir()):
                raise FileNotFoundError(
                    f"ImageNet {split} split not found: expected class folders in {d} "
                    f"(layout {self.root}/train/<class>/*.JPEG and {self.root}/val/<class>/*.JPEG; "
                    f"set data.root=/path/to/imagenet)"
                )

    def normalisation(self) -> tuple[tuple, tuple]:
        from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        return IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    def transforms(self):
        from timm.data import create_transform

        register_safe_posterize()
        mean, std = self.normalisation()
        train = create_transform(self.img_size, is_training=True, auto_augment=self.auto_augment,
                                 re_prob=self.reprob, re_mode="pixel", re_count=1, interpolation=self.interpolation,
                                 mean=mean, std=std)
        evaluate = create_transform(self.img_size, is_training=False, crop_pct=self.crop_pct,
                                    interpolation=self.interpolation, mean=mean, std=std)
        return train, evaluate

    def preprocessing(self) -> dict:
        mean, std = self.normalisation()
        return {"input_size": [3, self.img_size, self.img_size], "mean": list(mean), "std": list(std),
                "crop_pct": self.crop_pct, "interpolation": self.interpolation,
                "note": "timm's evaluation transform: resize to img_size / crop_pct, centre crop"}

    def _train_datasets(self):
        from torchvision.datasets import ImageFolder

        self.check()
        train_tf, eval_tf = self.transforms()
        if self.verify:
            verify_images(image_files(self.root / "train") + image_files(self.root / "val"), self.num_workers)
        train_aug = ImageFolder(str(self.root / "train"), transform=train_tf, loader=load_image)
        train_eval = ImageFolder(str(self.root / "train"), transform=eval_tf, loader=load_image)
        if len(train_aug.classes) != self.num_classes:
            raise ValueError(f"{self.root}/train has {len(train_aug.classes)} classes but data.num_classes={self.num_classes}")
        val_classes = sorted(d.name for d in (self.root / "val").iterdir() if d.is_dir())
        if val_classes != train_aug.classes:  # ImageFolder numbers classes by sorted folder name
            differ = sorted(set(val_classes) ^ set(train_aug.classes))[:3]
            raise ValueError(f"{self.root}/val and {self.root}/train have different class folders (e.g. {differ}): "
                             f"the labels would not match")
        return train_aug, train_eval, train_aug.targets

    def _val_dataset(self):
        from torchvision.datasets import ImageFolder

        self.check("validate")
        return ImageFolder(str(self.root / "val"), transform=self.transforms()[1], loader=load_image)
