"""S3: Searching the Search Space of Vision Transformer (AutoFormerV2), end to end."""

from s3.console import quiet_logs

__version__ = "0.1.0"

quiet_logs()  # before torch and timm are imported: some of their messages are written at import time

from s3.registry import register_configs  # noqa: E402  (after quiet_logs)

register_configs()  # the configs compose whatever module of the package was imported first


def from_pretrained(directory, map_location="cpu"):
    """The model export.py wrote into `directory` (an `S3Transformer`), weights loaded strictly."""
    from s3.export import from_pretrained as load

    return load(directory, map_location)
