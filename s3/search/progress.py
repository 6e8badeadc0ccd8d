"""Progress of a search's long phases, shown by rank 0 only: a rich bar on a terminal, and where
the output is a file (a SLURM log, `make demo > log`), where rich would draw nothing until the
end, a log line at every tenth of the work and at least every 30 seconds."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger(__name__)


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True, every_s: float = 30.0,
                 console: Console | None = None) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)`; a no-op where disabled (other ranks)."""
    if not enabled:
        yield lambda n=1: None
        return
    console = console or Console()
    if not console.is_terminal:
        yield _logged(description, total, every_s)
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, transient=False, console=console) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def _logged(description: str, total: int, every_s: float) -> Callable[[int], None]:
    start = last = time.monotonic()
    done, step = 0, max(1, total // 10)

    def advance(n: int = 1) -> None:
        nonlocal done, last
        before, done, now = done, done + n, time.monotonic()
        if done // step > before // step or now - last >= every_s or (done >= total > before):
            elapsed = now - start
            eta = elapsed / done * (total - done) if done else float("nan")
            log.info("%s: %d/%d (%.0f s, eta %.0f s)", description, done, total, elapsed, eta)
            last = now

    return advance
