from s3.models.checkpoint import load_checkpoint, load_state_dict
from s3.models.transformer import S3Transformer, Supernet

__all__ = ["S3Transformer", "Supernet", "load_checkpoint", "load_state_dict"]
