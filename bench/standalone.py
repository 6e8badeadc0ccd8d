"""Standalone training of architectures for the quality benchmarks, cached and resumable.

One `train.py experiment=retrain_tiny` run per (recipe, arch, seed), in
`<root>/<epochs>ep_<images>/<arch hash>_seed<seed>/`: every benchmark that trains the same arch
with the same recipe and seed shares the run. A finished run is read back (`result.json`); an
interrupted one continues from its last checkpoint, because re-running train.py's identical
command does that; so an interrupted benchmark resumes where it stopped. A run is trained under a
file lock, so benchmark processes that share a cache (two study processes on disjoint search seeds)
never train one run twice at once.
"""

from __future__ import annotations

import concurrent.futures
import csv
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from filelock import FileLock

from s3.search.constraints import Constraints
from s3.space import Arch, SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def arch_key(arch: Arch) -> str:
    return hashlib.sha1(json.dumps(arch.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Recipe:
    """What every standalone run of a benchmark shares: epochs, images per epoch, extra overrides."""

    epochs: int = 3
    max_train: str = "20000"  # images per epoch, or "all" (59,000)
    overrides: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        extra = "_" + hashlib.sha1(" ".join(self.overrides).encode()).hexdigest()[:8] if self.overrides else ""
        return f"{self.epochs}ep_{self.max_train}{extra}"


def _run(arch: Arch, seed: int, recipe: Recipe, root: Path, threads: int) -> dict:
    out = root / recipe.name / f"{arch_key(arch)}_seed{seed}"
    result = out / "result.json"
    if result.is_file():
        return json.loads(result.read_text())
    out.mkdir(parents=True, exist_ok=True)
    # two benchmark processes that need one run train it once (beside the run: train.py locks <run>/.lock)
    with FileLock(out.with_name(out.name + ".lock")):
        if result.is_file():  # the other one finished it while this one waited
            return json.loads(result.read_text())
        arch_yaml = arch.to_yaml(out / "arch.yaml")
        images = "null" if recipe.max_train == "all" else recipe.max_train
        cmd = [sys.executable, str(ROOT / "train.py"), "experiment=retrain_tiny", f"arch={arch_yaml}", f"seed={seed}",
               f"trainer.max_epochs={recipe.epochs}", f"data.max_train={images}",
               f"trainer.check_val_every_n_epoch={recipe.epochs}", *recipe.overrides,
               f"hydra.run.dir={out}", "+trainer.enable_progress_bar=false"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_SILENT": "true"}
        start = time.time()
        if not (out / "finished.json").is_file():
            with open(out / "stdout.log", "a") as log:
                done = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
            if done.returncode:
                raise RuntimeError(f"standalone run failed (exit {done.returncode}): {out / 'stdout.log'}")
        rows = [r for r in csv.DictReader(open(out / "csv" / "metrics.csv")) if r.get("val/top1")]
        value = {"arch": str(arch), "seed": seed, "top1": float(rows[-1]["val/top1"]),
                 "seconds": time.time() - start, "threads": threads}
        tmp = result.with_suffix(".tmp")
        tmp.write_text(json.dumps(value, indent=2))
        tmp.replace(result)
        return value


def train_all(jobs: Sequence[tuple[Arch, int]], recipe: Recipe, root: str | Path = "logs/bench/standalone",
              parallel: int = 2, finished: Callable[[Arch, dict], None] | None = None) -> list[dict]:
    """Train every (arch, seed) of `jobs` standalone, `parallel` runs side by side sharing the cores
    (small models use two cores better as two one-thread runs than as one two-thread run).
    Returns each run's {arch, seed, top1 (test set, %), seconds}, in the order of `jobs`;
    `finished(arch, run)` is called as each one ends, so a caller can record it at once."""
    if parallel < 1:
        raise ValueError(f"parallel={parallel}: must be >= 1")
    threads = max(1, len(os.sched_getaffinity(0)) // parallel)  # the cores this process may use (taskset, SLURM)
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        futures = {pool.submit(_run, arch, seed, recipe, Path(root), threads): arch for arch, seed in jobs}
        for future in concurrent.futures.as_completed(futures):
            if finished is not None:
                finished(futures[future], future.result())
        return [f.result() for f in futures]


def constraints_of(name: str | None, space: SearchSpace) -> Constraints:
    """The budget of a `conf/constraints/<name>.yaml` file (None: unconstrained), for Fashion-MNIST."""
    c = yaml.safe_load((ROOT / "conf" / "constraints" / f"{name}.yaml").read_text()) if name else {}
    return Constraints(space, c.get("params"), c.get("flops"), num_classes=10)


def sample_archs(space: SearchSpace, constraints: Constraints, n: int, seed: str) -> list[Arch]:
    """The first `n` distinct uniform draws of `space` that meet `constraints`: the same seed gives
    the same archs in every benchmark, so their standalone runs are shared."""
    rng, archs = random.Random(seed), {}
    for _ in range(200_000):
        arch = space.sample(rng)
        if constraints.satisfied(arch):
            archs.setdefault(arch, None)
            if len(archs) == n:
                return list(archs)
    raise ValueError(f"only {len(archs)} of {n} archs meet {constraints} in 200,000 draws")
