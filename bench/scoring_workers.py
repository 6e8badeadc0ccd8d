"""Pool scoring with `search.workers` forked single-thread processes against one process with every
thread, as `make demo`'s space search scores: the `wide` space's archs in the 750k-1M band,
1,000 images, the default batch, bf16 autocast where the CPU has it, and calls of 8 archs (a
twentieth of the demo's pool of 160; the processes are forked at the first call). Timed interleaved
(the variants in turns) in one run; the records must be equal. The figures are rows of
bench/results/speed.csv (bench/speed_rows.py).

    python bench/scoring_workers.py [--archs 32] [--workers 2] [--rounds 3] [--force]
"""

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import torch
from speed_rows import Figures

from s3.constraints import Constraints
from s3.models import Supernet
from s3.precision import cpu_precision
from s3.search.configs import Evaluation
from s3.search.evaluator import CachedSplit, CandidateEvaluator
from s3.search.pool import sample_pool
from s3.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def score(supernet, split, constraints, archs, workers: int, chunk: int, autocast) -> tuple[float, list]:
    t0 = time.perf_counter()
    with CandidateEvaluator(supernet, split, constraints, Evaluation.batch_size, autocast, workers=workers) as evaluator:
        for i in range(0, len(archs), chunk):
            evaluator.evaluate(archs[i:i + chunk])
    return time.perf_counter() - t0, evaluator.records()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--archs", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk", type=int, default=8, help="archs per evaluate call")
    p.add_argument("--rounds", type=int, default=3)
    args, figures = Figures.parse(p, "scoring_workers")
    if figures is None:
        return
    torch.manual_seed(0)
    space = SearchSpace.from_yaml(ROOT / "conf" / "space" / "wide.yaml")
    supernet = Supernet(space, num_classes=10).eval()
    constraints = Constraints(space, params={"min": 7.5e5, "max": 1e6}, num_classes=10)
    archs = [m.arch for m in sample_pool(space, constraints, args.archs, "bench:workers", "stage_uniform")]
    g = torch.Generator().manual_seed(1)
    split = CachedSplit(torch.randn(1000, 3, space.img_size, space.img_size, generator=g),
                        torch.randint(0, 10, (1000,), generator=g))
    bf16 = cpu_precision().startswith("bf16")
    autocast = (lambda: torch.autocast("cpu", torch.bfloat16)) if bf16 else contextlib.nullcontext
    threads = torch.get_num_threads()
    print(f"cpu, {threads} threads, {len(archs)} archs of wide in 750k-1M, 1,000 images, batch "
          f"{Evaluation.batch_size}, {'bf16' if bf16 else 'fp32'}, calls of {args.chunk}, {args.rounds} rounds", flush=True)
    times: dict[int, list[float]] = {1: [], args.workers: []}
    for workers in times:  # warm-up: the first forward of a shape builds its kernels
        score(supernet, split, constraints, archs[:2], workers, args.chunk, autocast)
    for r in range(args.rounds):
        records = {}
        for workers in times:
            t, records[workers] = score(supernet, split, constraints, archs, workers, args.chunk, autocast)
            times[workers].append(t / len(archs))
            print(f"round {r}: workers={workers}: {t / len(archs):.3f} s per arch", flush=True)
        if records[1] != records[args.workers]:
            raise SystemExit("the forked workers' records differ from the one-process evaluator's")
    one, forked = statistics.median(times[1]), statistics.median(times[args.workers])
    what = f"wide, 750k-1M, 1,000 images, calls of {args.chunk}, median of {args.rounds} rounds"
    figures.add(f"pool scoring, one process of {threads} threads ({what})", one, "s per arch")
    figures.add(f"pool scoring, {args.workers} forked processes of one thread ({what})", forked, "s per arch")
    figures.add(f"pool scoring, archs per second: {args.workers} forked workers / one process of {threads} threads",
                one / forked, "x", "> 1 (make demo < 15 min)")


if __name__ == "__main__":
    main()
