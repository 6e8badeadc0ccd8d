"""The searches of S3: E-T Error and space evolution, evolutionary and random architecture search."""
