"""A ground-truth library of the ablation's budget band (issue 43, section 3): the first 150 archs
of the fixed sequence `band:0` (space=wide inside constraints=band_1m_macs) trained standalone with
the ablation's recipe, seed 0 for all, seed 1 for the first 30. The plan: bench/README.md.

    taskset -c 0 python bench/ground_truth.py --jobs 1     # trains what the rows lack (resumable)
    python bench/ground_truth.py --score <the study's --out>  # scores the library with its finished supernets
    python bench/ground_truth.py --report                  # the noise, ceilings and fidelity, from the rows

Rows: bench/results/ground_truth.csv (one per run, appended as it ends); library_scores.csv (each
finished supernet of bench/search_evidence.py's study: every library arch's inherited top-1 on the
search split the searches rank on).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rows import append_row, read_rows  # noqa: E402
from standalone import ROOT, Recipe, constraints_of, sample_archs, train_all  # noqa: E402

from s3.space import SearchSpace  # noqa: E402

ROWS = ROOT / "bench" / "results" / "ground_truth.csv"
COLUMNS = ["arch", "params", "macs", "seed", "test_top1", "recipe", "seconds"]
SCORES = ROOT / "bench" / "results" / "library_scores.csv"
SCORE_COLUMNS = ["search_seed", "supernet", "arch", "search_top1"]
LIBRARY, NOISE = 250, 30
RECIPE = Recipe(2, "20000")  # the ablation's (bench/search_evidence.py --epochs 2 --max-train 20000)
CONSTRAINTS = "band_1m_macs"


def library() -> list:
    space = SearchSpace.from_yaml(ROOT / "conf" / "space" / "wide.yaml")
    return sample_archs(space, constraints_of(CONSTRAINTS, space), LIBRARY, "band:0")


def jobs() -> list:
    """Seed 0 of the first 30 archs, their seed 1 (the noise, early), then seed 0 of the rest."""
    archs = library()
    return [(a, 0) for a in archs[:NOISE]] + [(a, 1) for a in archs[:NOISE]] + [(a, 0) for a in archs[NOISE:]]


def train(parallel: int, root: str) -> None:
    constraints = constraints_of(CONSTRAINTS, SearchSpace.from_yaml(ROOT / "conf" / "space" / "wide.yaml"))
    done = {(r["arch"], r["seed"]) for r in read_rows(ROWS) if r["recipe"] == RECIPE.name}
    todo = [(a, s) for a, s in jobs() if (str(a), str(s)) not in done]
    print(f"[{time.strftime('%H:%M:%S')}] ground truth: {len(jobs()) - len(todo)} runs in the rows, "
          f"{len(todo)} to train ({RECIPE.name})", flush=True)
    count = [len(jobs()) - len(todo)]

    def finished(arch, run: dict) -> None:
        cost = constraints.cost(arch)
        append_row(ROWS, COLUMNS, {"arch": str(arch), "params": cost["params"], "macs": cost["macs"],
                                   "seed": run["seed"], "test_top1": round(run["top1"], 2), "recipe": RECIPE.name,
                                   "seconds": round(run["seconds"], 1)})
        count[0] += 1
        print(f"[{time.strftime('%H:%M:%S')}] {count[0]}/{len(jobs())}: seed {run['seed']} {run['top1']:.2f} % "
              f"{arch}", flush=True)

    for start in range(0, len(todo), 4 * parallel):  # in chunks: rows land as runs end, memory stays small
        train_all(todo[start:start + 4 * parallel], RECIPE, root=root, parallel=parallel, finished=finished)


def finished_supernets(out: Path) -> dict[tuple[str, str], Path]:
    """(search seed, supernet kind) -> checkpoint, for every supernet of the study under `out` whose
    training finished (a run still training is left for a later call)."""
    runs = {"autoformer": "autoformer_supernet", "band": "band_supernet", "s3_iter0": "s3_space/iter0",
            "s3_searched": "s3_supernet", **{f"s3_iter{i}": f"s3_space/iter{i}" for i in range(1, 4)}}
    # the kinds that score the whole library first; the searched space's and iteration 1's hold only part of it
    return {(d.name.removeprefix("seed"), kind): d / run / "checkpoints" / "last.ckpt"
            for kind, run in runs.items() for d in sorted(out.glob("seed*"), key=lambda d: int(d.name[4:]))
            if (d / run / "finished.json").is_file()}


def score(out: Path) -> None:
    from search_evidence import inherited_top1, search_split

    archs = library()
    have = {(r["search_seed"], r["supernet"], r["arch"]) for r in read_rows(SCORES)}
    split = None
    for (seed, kind), ckpt in finished_supernets(out).items():
        todo = [a for a in archs if (seed, kind, str(a)) not in have]
        if not todo:
            continue
        split = split or search_split()
        t0, n = time.time(), 0
        for a, top1 in inherited_top1(ckpt, split, todo):
            append_row(SCORES, SCORE_COLUMNS, {"search_seed": seed, "supernet": kind, "arch": str(a),
                                               "search_top1": f"{top1:.2f}"})
            n += 1
        print(f"[{time.strftime('%H:%M:%S')}] seed {seed} {kind}: {n} archs scored in {time.time() - t0:.0f} s",
              flush=True)


def kendall(x, y) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(x, y)[0])


def report() -> str:
    rows = [r for r in read_rows(ROWS) if r["recipe"] == RECIPE.name]
    by_arch: dict[str, dict[str, float]] = {}
    for r in rows:
        by_arch.setdefault(r["arch"], {})[r["seed"]] = float(r["test_top1"])
    seed0 = [v["0"] for v in by_arch.values() if "0" in v]
    both = [(v["0"], v["1"]) for v in by_arch.values() if {"0", "1"} <= set(v)]
    lines = [f"ground truth ({RECIPE.name}, {CONSTRAINTS}): {len(seed0)} of {LIBRARY} archs with seed 0, "
             f"{len(both)} of {NOISE} with both seeds"]
    if len(seed0) >= 2:
        lines.append(f"- seed-0 top-1 across the band: mean {statistics.fmean(seed0):.2f} %, SD "
                     f"{statistics.stdev(seed0):.2f}, range {min(seed0):.2f}-{max(seed0):.2f}")
    if len(both) >= 5:
        a, b = zip(*both)
        d = [x - y for x, y in both]
        rng = random.Random(0)
        boot = []
        for _ in range(2000):
            idx = [rng.randrange(len(both)) for _ in both]
            t = kendall([a[i] for i in idx], [b[i] for i in idx])
            if not math.isnan(t):
                boot.append(t)
        tau = kendall(a, b)
        lines.append(f"- seed 0 vs seed 1 on {len(both)} archs: Kendall tau {tau:.3f} ± {statistics.stdev(boot):.3f} "
                     f"(bootstrap SE); SD of the difference {statistics.stdev(d):.2f} points "
                     f"(one run's SD {statistics.stdev(d) / math.sqrt(2):.2f})")
        spread = statistics.stdev(seed0) if len(seed0) >= 2 else float("nan")
        noise = statistics.stdev(d) / math.sqrt(2)
        reliability = max(0.0, 1 - noise**2 / spread**2) if spread == spread and spread > 0 else float("nan")
        lines.append(f"- share of the band's top-1 variance that is the arch, not the seed: {reliability:.2f} "
                     f"for one seed, {2 * reliability / (1 + reliability):.2f} for the 2-seed mean (Spearman-Brown)")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=1, help="standalone runs side by side (1 per core)")
    p.add_argument("--root", default="logs/bench/standalone", help="the standalone runs' cache")
    p.add_argument("--score", type=Path, metavar="OUT", help="score the library with the study's finished supernets")
    p.add_argument("--report", action="store_true", help="only the figures, from the rows")
    args = p.parse_args()
    if args.score:
        score(args.score)
    elif not args.report:
        train(args.jobs, args.root)
    print(report())


if __name__ == "__main__":
    main()
