from s3.lit.classifier import ClassifierModule
from s3.lit.supernet import SupernetModule

__all__ = ["ClassifierModule", "SupernetModule"]
