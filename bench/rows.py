"""The benchmarks' results as rows of a CSV file under bench/results/: each finished measurement is
appended and flushed at once, so a killed benchmark keeps it, a rerun skips it, and every table
and figure is recomputed from the rows."""

from __future__ import annotations

import csv
import os
from pathlib import Path


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def append_row(path: Path, columns: list[str], row: dict) -> None:
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, columns)
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in columns})
        f.flush()
        os.fsync(f.fileno())
