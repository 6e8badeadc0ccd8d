"""Callbacks and I/O plugins specific to S3 training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from s3.io import atomic_torch_save, atomic_write_text


class SampledArchLog(L.Callback):
    """Appends the subnet(s) every rank trained at every step to `sampled_archs.rank{r}.jsonl`:
    the record that ranks agree and that a resumed run continues the same sequence."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_train_start(self, trainer, pl_module) -> None:
        """Keep exactly the steps before the one training starts at: a fresh run empties the log, a
        resumed one drops what was logged after its checkpoint (a stop in the middle of an epoch)."""
        log = self.dirpath / f"sampled_archs.rank{trainer.global_rank}.jsonl"
        if log.is_file():
            kept = [line for line in log.read_text().splitlines() if json.loads(line)["step"] < trainer.global_step]
            atomic_write_text(log, "".join(f"{line}\n" for line in kept))

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


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM (what SLURM sends at a time limit, a preemption or a requeue) Lightning stops at
    the next batch boundary; this saves `last.ckpt` there, so that re-running the identical
    command continues from exactly that step (`s3.train` then exits with code 143)."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.dirpath / "last.ckpt")
