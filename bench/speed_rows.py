"""The small speed scripts' figures as rows of bench/results/speed.csv (supernet_overhead,
search_overhead, scoring_workers, train_throughput, cost_model, cpu_speed, precision_accuracy, flow_cost): one row
per figure, keyed by the machine that measured it (CPU, threads, torch) and the commit. A rerun on
the same machine and commit prints what the rows hold instead of measuring again (`--force`
re-measures), and `python -m bench.report` shows the latest row of each figure."""

from __future__ import annotations

import argparse
import math
import platform
import subprocess
from pathlib import Path

import torch
from rows import append_row, read_rows

ROOT = Path(__file__).resolve().parents[1]
ROWS = ROOT / "bench" / "results" / "speed.csv"
COLUMNS = ["bench", "figure", "value", "unit", "target", "commit", "cpu", "threads", "torch"]


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def significant(value: float, digits: int = 3) -> str:
    """`value` to `digits` significant digits, without an exponent (6450, 1.04, 0.972)."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    places = digits - 1 - math.floor(math.log10(abs(value)))
    return f"{round(value, places):.{max(0, places)}f}"


def key() -> dict[str, str]:
    return {"commit": commit(), "cpu": cpu_name(), "threads": str(torch.get_num_threads()), "torch": torch.__version__}


class Figures:
    """One speed script's run: `held()` says whether this machine and commit measured it already
    (and prints those rows); `add` appends a figure as soon as it is measured."""

    def __init__(self, bench: str, rows: Path = ROWS):
        self.bench, self.rows, self.key = bench, rows, key()

    @classmethod
    def parse(cls, parser: argparse.ArgumentParser, bench: str) -> tuple[argparse.Namespace, Figures | None]:
        """A speed script's arguments, with `--force`, and the Figures to record into; None when the
        rows hold this commit and machine's figures already (they are printed instead)."""
        parser.add_argument("--force", action="store_true",
                            help="measure again what the rows hold for this commit and machine")
        args = parser.parse_args()
        figures = cls(bench)
        return args, (None if figures.held() and not args.force else figures)

    def held(self) -> bool:
        mine = [r for r in read_rows(self.rows)
                if r["bench"] == self.bench and all(r[k] == v for k, v in self.key.items())]
        for r in mine:
            print(f"{r['figure']}: {r['value']} {r['unit']} (in {self.rows.name} for this commit and machine)")
        return bool(mine)

    def add(self, figure: str, value: float, unit: str, target: str = "", digits: int = 3) -> None:
        append_row(self.rows, COLUMNS, {"bench": self.bench, "figure": figure, "value": significant(value, digits),
                                        "unit": unit, "target": target, **self.key})
        print(f"{figure}: {significant(value, digits)} {unit}" + (f" (target {target})" if target else ""), flush=True)


def report(rows: list[dict]) -> str:
    """The latest row of each (bench, figure) as one table per bench script, in the rows' order."""
    if not rows:
        return f"{ROWS.name} holds no rows yet: run `make bench`."
    latest = {(r["bench"], r["figure"]): r for r in rows}
    lines: list[str] = []
    for bench in dict.fromkeys(r["bench"] for r in rows):
        mine = [r for (b, _), r in latest.items() if b == bench]
        where = sorted({f"{r['cpu']}, {r['threads']} threads, torch {r['torch']}, commit {r['commit']}" for r in mine})
        lines += ["", f"**`python bench/{bench}.py`** ({'; '.join(where)})", "",
                  "| figure | value | target |", "|---|---|---|"]
        lines += [f"| {r['figure']} | {r['value']} {r['unit']} | {r['target']} |" for r in mine]
    return "\n".join(lines).strip()
