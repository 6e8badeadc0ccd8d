from s3.lit.standalone import StandaloneModule
from s3.lit.supernet import SupernetModule

__all__ = ["StandaloneModule", "SupernetModule"]
