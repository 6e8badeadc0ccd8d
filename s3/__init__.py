"""S3: Searching the Search Space of Vision Transformer (AutoFormerV2), end to end."""

from s3.console import quiet_logs

__version__ = "0.1.0"

quiet_logs()  # before torch and timm are imported: some of their messages are written at import time

from s3.registry import register_configs  # noqa: E402  (after quiet_logs)

register_configs()  # the configs compose whatever module of the package was imported first
