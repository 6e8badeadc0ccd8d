"""S3: Searching the Search Space of Vision Transformer (AutoFormerV2), end to end."""

from s3.console import quiet_logs

__version__ = "0.1.0"

quiet_logs()  # before torch and timm are imported: some of their messages are written at import time
