"""Callbacks and I/O plugins specific to S3 training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from s3.io import atomic_torch_save


class SampledArchLog(L.Callback):
    """Appends the subnet(s) every rank trained at every step to `sampled_archs.rank{r}.jsonl`:
    the record that ranks agree and that a resumed run continues the same sequence."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        archs = getattr(pl_module, "last_archs", None)
        if not archs:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"step": trainer.global_step - 1, "batch": batch_idx, "archs": [a.to_dict() for a in archs]})
        with open(self.dirpath / f"sampled_archs.rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(line + "\n")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file and renames it, so an interruption never leaves a
    truncated `last.ckpt` behind."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if "file" not in get_filesystem(path).protocol:  # remote stores keep Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)
