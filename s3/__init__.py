"""S3: Searching the Search Space of Vision Transformer (AutoFormerV2), end to end."""

__version__ = "0.1.0"
