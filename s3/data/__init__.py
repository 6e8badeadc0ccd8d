from s3.data.base import ClassificationDataModule
from s3.data.cifar import CIFARDataModule
from s3.data.fashion_mnist import FashionMNISTDataModule
from s3.data.folder import FolderDataModule
from s3.data.imagenet import ImageNetDataModule

__all__ = ["ClassificationDataModule", "CIFARDataModule", "FashionMNISTDataModule", "FolderDataModule",
           "ImageNetDataModule"]
