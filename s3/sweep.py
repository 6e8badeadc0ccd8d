"""Sweeps (`-m`) that finish their feasible jobs: a job whose input is bad records why in its
`failed.json` and hands over to the next job (the basic launcher would abandon the whole sweep on
the first `sys.exit`), and the sweep directory keeps one table across its jobs, `summary.md` /
`summary.csv`: overrides, status, found arch, params, MACs, top-1 (%), or the error."""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from s3.io import atomic_write_text
from s3.run import EVALUATION, SEARCH, TRAINING
from s3.space import Arch

log = logging.getLogger("s3")
FAILED = "failed.json"
COLUMNS = ("job", "overrides", "status", "arch", "params", "macs", "top1", "error")


def in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(message: str) -> None:
    """A job of a sweep refused its input: say why where the summary looks for it."""
    hydra = HydraConfig.get()
    atomic_write_text(Path(hydra.runtime.output_dir) / FAILED,
                      json.dumps({"error": message, "overrides": list(hydra.overrides.task)}, indent=2))


def job_row(out: Path, job: int, overrides: list[str]) -> dict[str, Any]:
    """What one job left in its directory: a search's best pick, an evaluation, a training's end."""
    row: dict[str, Any] = {"job": job, "overrides": " ".join(overrides), "status": "not finished"}

    def read(name: str) -> dict | None:
        try:
            return json.loads((out / name).read_text())
        except (OSError, ValueError):
            return None

    if failed := read(FAILED):
        return {**row, "status": "failed", "error": failed.get("error", "")}
    if result := read(SEARCH.marker):  # a search
        pick = (result.get("picks") or [{}])[0]
        top1 = pick.get("top1", result.get("best_search_top1"))
        return {**row, "status": "done", "arch": pick.get("arch", ""), "params": pick.get("params", ""),
                "macs": pick.get("macs", ""), "top1": f"{top1:.2f}" if isinstance(top1, float) else ""}
    if evaluation := read(EVALUATION.marker):
        return {**row, "status": "done", "arch": str(Arch.from_dict(evaluation["arch"])),
                "params": evaluation.get("params", ""), "macs": evaluation.get("macs", ""),
                "top1": f"{evaluation.get('top1', float('nan')):.2f}"}
    if finished := read(TRAINING.marker):  # a training: its final validation top-1 (a fraction there), in %
        top1 = finished.get("val/largest/top1", finished.get("val/top1"))
        return {**row, "status": "done", "top1": f"{top1:.2f}" if isinstance(top1, float) else ""}
    return row


def write_summary(sweep_dir: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(sweep_dir / "summary.csv", buffer.getvalue())
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r.get(c, "")).replace("|", "\\|") for c in COLUMNS) + " |" for r in rows]
    atomic_write_text(sweep_dir / "summary.md", "\n".join(lines) + "\n")


def override_key(override: str) -> str:
    """`+a.b=1` -> `a.b`."""
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys(sweep_dir: Path) -> set[str] | None:
    """The keys a sweep varies, from the `multirun.yaml` Hydra writes at its start."""
    try:
        task = OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides.task
    except (OSError, ValueError, AttributeError):
        return None
    sweep_syntax = (",", "range(", "choice(", "glob(", "interval(")
    return {override_key(o) for o in task if "=" in o and any(s in o.split("=", 1)[1] for s in sweep_syntax)}


def sweep_rows(sweep_dir: Path, current: tuple[int, list[str]] | None = None) -> list[dict]:
    """One row per job directory of the sweep, read from what each job left there: the table is the
    same whichever process writes it (the basic launcher's, or a submitit job's)."""
    swept = swept_keys(sweep_dir)
    rows = []
    for job_dir in sorted((d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name)):
        num = int(job_dir.name)
        try:  # what the job saved: its .hydra/, or (refused before writing it) its failed.json
            overrides = [str(o) for o in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")]
        except (OSError, ValueError):
            try:
                overrides = json.loads((job_dir / FAILED).read_text())["overrides"]
            except (OSError, ValueError, KeyError):
                overrides = current[1] if current and current[0] == num else []
        shown = [o for o in overrides if swept is None or override_key(o) in swept]
        rows.append(job_row(job_dir, num, shown))
    return rows


class SweepSummary(Callback):
    """Rewrites the sweep's summary after every job (a stopped sweep keeps the table of what ran);
    at the end, names the failed jobs and exits non-zero if there are any."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs) -> None:
        # the job's whole config: `job_return.hydra_cfg` holds the hydra node alone, where the sweep
        # directory's `${paths.log_dir}` has nothing to resolve against
        hydra = config.get("hydra")
        if hydra is None or hydra.mode != RunMode.MULTIRUN:
            return
        num, out = int(hydra.job.num), Path(hydra.runtime.output_dir)
        if job_return.status.name == "FAILED" and not (out / FAILED).is_file():  # a crash, not a refused input
            try:
                _ = job_return.return_value  # Hydra's JobReturn re-raises a failed job's exception here
            except Exception as e:  # noqa: BLE001  (any exception a job can raise is its error)
                atomic_write_text(out / FAILED, json.dumps({"error": repr(e)}, indent=2))
        write_summary(Path(hydra.sweep.dir), sweep_rows(Path(hydra.sweep.dir), (num, list(job_return.overrides or []))))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        stray = sweep_dir / ".submitit" / "%j"  # made by submitit's local executor from its folder pattern, left empty
        if stray.is_dir() and not any(stray.iterdir()):
            stray.rmdir()
        rows = sweep_rows(sweep_dir)
        write_summary(sweep_dir, rows)
        log.info("sweep summary: %s", sweep_dir / "summary.md")
        failed = [r for r in rows if r["status"] == "failed"]
        if failed:
            lines = "; ".join(f"job {r['job']} ({r['overrides']}): {r['error']}" for r in failed)
            print(f"error: {len(failed)} of {len(rows)} jobs failed: {lines} (table: {sweep_dir / 'summary.md'})",
                  file=sys.stderr)
            sys.exit(2)
