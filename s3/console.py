"""The console of a run: which library messages carry no information for this project (one list,
applied here and nowhere else), and how wide rich draws its tables."""

from __future__ import annotations

import logging
import os
import sys

# What a run printed and no user of this project acts on, silenced here and nowhere else.
QUIET_WARNINGS = (
    r"Checkpoint directory .* exists and is not empty",  # checkpoints/ holds config.yaml by design (supernet=latest)
    r"Precision .* is not supported by the model summary",  # the summary's bf16 size caveat
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own pytree helper meeting this torch
    r"The number of training batches .* is smaller than the logging interval",  # a short run logs at its end anyway
)
QUIET_LOGS = {
    "lightning.pytorch.utilities.rank_zero": lambda r: not str(r.msg).startswith(  # litlogger's tip; a step count
        ("💡 Tip", "Loading `train_dataloader` to estimate")),
    "lightning.fabric.utilities.seed": lambda r: "Seed set to" not in str(r.msg),  # config.yaml records the seed
    "timm.scheduler.cosine_lr": lambda r: "will have no effect" not in str(r.msg),  # a one-step schedule
    "torch.utils.cpp_extension": lambda r: "No CUDA runtime is found" not in str(r.msg),  # CPU machines: expected
}


def quiet_logs() -> None:
    """The library log messages above, filtered by their loggers (which need not exist yet)."""
    for name, keep in QUIET_LOGS.items():
        logging.getLogger(name).addFilter(keep)


def quiet_library_noise() -> None:
    """The console of a run: the library messages above silenced; rich tables as wide as their
    content where the output is a file or a pipe (rich would cut them at 80 columns); and a log
    file that cannot be written (a full disk) reported once by the run's own one-line error, not
    by logging's `--- Logging error ---` tracebacks first."""
    import warnings

    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    quiet_logs()
    logging.raiseExceptions = False
    if not sys.stdout.isatty():
        import rich

        rich.reconfigure(width=max(160, int(os.environ.get("COLUMNS", 0) or 0)))


def print_table(table) -> None:
    """A rich table at its full width: wider than the terminal, it wraps lines rather than cut a
    column's header or value to an ellipsis."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console()
    needed = Measurement.get(console, console.options.update_width(10_000), table).maximum
    (console if needed <= console.width else Console(width=needed)).print(table)
