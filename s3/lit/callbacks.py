"""Callbacks and I/O plugins specific to S3 training."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from s3.data.images import BadImageError
from s3.io import atomic_torch_save, atomic_write_text
from s3.lit.supernet import SupernetModule

log = logging.getLogger(__name__)


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
        if not isinstance(pl_module, SupernetModule) or not pl_module.last_archs:
            return
        archs = pl_module.last_archs
        self.dirpath.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"step": pl_module.last_step, "batch": batch_idx, "archs": [a.to_dict() for a in archs]})
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
    """Saves `last.ckpt` at the batch boundary where a stopped job stops, so that re-running the
    identical command (what a requeue does) continues from exactly that step.

    - SIGTERM (what SLURM sends at a time limit or a preemption): Lightning stops at the next batch
      boundary (agreed across ranks) and this saves there; `s3.train` then exits with code 143.
    - `requeue_signal` (submitit's time-limit warning, USR2 unless SUBMITIT_PREEMPT_SIGNAL says
      otherwise; the SLURM launcher asks for it `signal_delay_s` before the limit): submitit's own
      handler would requeue and exit from inside the handler, mid-step, without a checkpoint. This
      one only asks Lightning to stop as on SIGTERM; once `last.ckpt` is saved, `hand_over` runs the
      handler that was installed before training (submitit's: requeue the job, then exit).
    - A stop during validation waits for the validation to end (Lightning would checkpoint in its
      middle and skip it on the re-run, losing the epoch's validation row): the run stops right
      after it, with the epoch's checkpoint and metrics complete.
    - An image that cannot be decoded stops training (`BadImageError`): `last.ckpt` is saved at
      that batch boundary too, so replacing the file and re-running loses nothing."""

    def __init__(self, dirpath: str, requeue_signal: str | None = "USR2"):
        self.dirpath = Path(dirpath)
        self.signum = None
        if requeue_signal:
            self.signum = getattr(signal, f"SIG{str(requeue_signal).upper().removeprefix('SIG')}", None)
            if not isinstance(self.signum, signal.Signals):
                raise ValueError(f"callbacks.preemption.requeue_signal={requeue_signal}: not a signal name "
                                 f"(e.g. USR1, USR2, TERM), or null to leave signals alone")
        self._installed = self._previous = self._trainer = None
        self._noted = self._deferred = False

    def on_train_start(self, trainer, pl_module) -> None:
        if self.signum is not None and threading.current_thread() is threading.main_thread():
            self._trainer, self._noted = trainer, False
            self._previous = signal.getsignal(self.signum)
            signal.signal(self.signum, self._note)
            self._installed = True

    def _note(self, signum, frame) -> None:
        self._noted = True  # no work inside a signal handler: Lightning stops after the step in flight
        self._trainer._signal_connector.received_sigterm = True

    def _restore(self) -> None:
        if self._installed:
            signal.signal(self.signum, self._previous)
            self._installed = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_validation_batch_end(self, trainer, *args, **kwargs) -> None:
        # Lightning has no public way to ask for, or defer, the SIGTERM stop it runs on (save, raise
        # SIGTERMException); `_signal_connector.received_sigterm` is that flag. tests/test_package.py
        # fails if the name disappears.
        connector = trainer._signal_connector
        if trainer.state.fn == "fit" and trainer.validating and connector.received_sigterm:
            connector.received_sigterm, self._deferred = False, True  # stop after the validation instead

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._deferred:
            trainer._signal_connector.received_sigterm, self._deferred = True, False

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore()
        in_training = trainer.state.fn == "fit" and not trainer.validating and not trainer.sanity_checking
        if isinstance(exception, SIGTERMException) or (isinstance(exception, BadImageError) and in_training):
            trainer.save_checkpoint(self.dirpath / "last.ckpt")

    def hand_over(self) -> None:
        """After the checkpoint: run the requeue signal's earlier handler (submitit's requeue + exit
        on rank zero) when that signal is what stopped training."""
        if self._noted and callable(self._previous):
            log.warning("stopped by %s: handing over to its earlier handler (submitit: requeue the job)", self.signum.name)
            self._noted = False
            self._previous(self.signum, None)
