"""Loggers that survive a resumed run, and one that keeps W&B quiet."""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger deletes the `metrics.csv` it finds. This one reads it back first and,
    at the first metrics a resumed run logs, keeps the earlier rows from before that step (the
    rows a run stopped mid-epoch logged after its checkpoint are logged again by the resumed run)."""

    _previous: list[dict] | None = None

    # `_experiment` (the writer, None until first used) and the writer's `metrics` list are
    # Lightning's private state, with no public route to keep earlier rows; tests/test_package.py
    # fails if either disappears.
    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is None:
            path = Path(self.log_dir) / "metrics.csv"
            if path.is_file():
                with open(path, newline="") as f:
                    self._previous = list(csv.DictReader(f))
        return super().experiment

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        writer = self.experiment
        if self._previous:
            writer.metrics[:0] = [r for r in self._previous if step is None or float(r["step"]) < step]
            self._previous = None
        super().log_metrics(metrics, step)


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger, without the `anonymous=None` it passes to `wandb.init`: W&B warns
    that the setting has no effect at every run. `_wandb_init` is Lightning's private record of the
    arguments; tests/test_first_hour.py fails if it disappears, and this class can then go."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
