from s3.models import zoo  # noqa: F401, E402  (registers the S3 family with timm: s3_tiny, ..., s3_transformer)
from s3.models.checkpoint import SupernetCheckpoint, load_checkpoint, load_state_dict, load_supernet
from s3.models.net import NetConfig
from s3.models.transformer import S3Transformer, Supernet

__all__ = ["NetConfig", "S3Transformer", "Supernet", "SupernetCheckpoint", "load_checkpoint", "load_state_dict", "load_supernet"]
