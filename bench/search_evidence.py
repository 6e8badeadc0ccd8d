"""Does the search work? S3's two claims on the embedded benchmark, judged by standalone training.
Run after `make demo` (the wide initial space, params band 750k-1M), whose space search and
found architecture it judges.

1. The space claim: `--archs` archs drawn uniformly under the params band from the initial space
   and from the searched space, each trained standalone with one recipe; the mean and E-T Error
   of their test error, and the difference with its standard error, Welch's t-test and a
   bootstrap interval.
2. The architecture claim, each retrained with `--seeds`:
   (a) the demo's architecture (space search, then evolution on the searched space's supernet);
   (b) the best arch of random search in the initial space: a supernet of the initial space trained
       exactly as the demo trains the searched space's, then `search=random` with the demo's number
       of evaluations and the same band;
   (c) a Swin-style hand design in the band: depths 1:1:3:1, widths C, 2C, 4C, 8C (the largest C,
       a multiple of 8, that fits), MLP ratio 4, heads = dim / 32, global windows (the largest
       legal window of every stage).

Every stage is cached under `--out` and every standalone run under logs/bench/standalone
(bench/standalone.py): re-running continues where an interrupted run stopped.

    make demo && python bench/search_evidence.py [--archs 12] [--seeds 42 1 2] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import ttest_ind  # noqa: E402
from standalone import ROOT, Recipe, constraints_of, sample_archs, train_all  # noqa: E402

from s3.search.constraints import Constraints  # noqa: E402
from s3.search.et_error import et_error  # noqa: E402
from s3.space import Arch, SearchSpace  # noqa: E402

DATA = ["data.max_train=12000", "data.max_val=2000"]  # what make demo trains and searches on


def hand_design(constraints: Constraints, space: SearchSpace, head_dim: int = 32) -> Arch:
    """Swin's recipe scaled to the budget: the largest base width C (multiple of 8) that fits."""
    best = None
    for c in range(8, 1025, 8):
        dims = [c, 2 * c, 4 * c, 8 * c]
        arch = Arch.create([1, 1, 3, 1], dims, [4.0] * 4, [max(1, d // head_dim) for d in dims], list(space.resolutions))
        params = constraints.cost(arch)["params"]
        if params > (constraints.ranges["params"].max or math.inf):
            break
        best = arch
    if best is None or not constraints.satisfied(best):
        raise ValueError(f"no Swin-style arch meets {constraints}")
    return best


def call(script: str, *args: str, out: Path, done: str) -> float:
    """Run an entry point into `out` unless its `done` file exists; its wall time in seconds (cached)."""
    timing = out / "seconds.json"
    if not (out / done).is_file():
        start = time.time()
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "stdout.log", "a") as log:
            subprocess.run([sys.executable, str(ROOT / script), *args, f"hydra.run.dir={out}"], check=True, cwd=ROOT,
                           stdout=log, stderr=subprocess.STDOUT, env={"WANDB_SILENT": "true", **os.environ})
        timing.write_text(json.dumps({"seconds": time.time() - start}))
    return json.loads(timing.read_text())["seconds"] if timing.is_file() else float("nan")


def first_log_time(log_file: Path) -> float:
    first = log_file.read_text().split("\n", 1)[0]
    return datetime.strptime(re.match(r"\[([^\]]+)\]", first).group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def demo_seconds(demo: Path) -> dict[str, float]:
    """Wall time of the stages of `make demo` that (a) needs, from their logs and end markers (a
    training logs only at its end, so it starts where the stage before it ended)."""
    space_end = (demo / "1_space" / "result.json").stat().st_mtime
    return {"(a) space search": space_end - first_log_time(demo / "1_space" / "search.log"),
            "(a) supernet of the searched space": (demo / "2_supernet" / "finished.json").stat().st_mtime - space_end,
            "(a) evolution": (demo / "3_evolution" / "result.json").stat().st_mtime
            - first_log_time(demo / "3_evolution" / "search.log")}


def bootstrap_ci(a: list[float], b: list[float], n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(a) - mean(b), resampling each group."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a), np.asarray(b)
    diffs = rng.choice(a, (n, len(a))).mean(1) - rng.choice(b, (n, len(b))).mean(1)
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def space_claim(initial: list[float], searched: list[float], top_k: int) -> dict:
    """Errors (%) of the standalone archs of both spaces: E-T Error, difference, its uncertainty."""
    diff = statistics.mean(initial) - statistics.mean(searched)
    se = math.sqrt(statistics.variance(initial) / len(initial) + statistics.variance(searched) / len(searched))
    t = ttest_ind(initial, searched, equal_var=False)
    return {"initial": et_error(initial, top_k).to_dict(), "searched": et_error(searched, top_k).to_dict(),
            "mean_error_difference": diff, "standard_error": se, "difference_in_se": diff / se,
            "welch_t": float(t.statistic), "welch_p": float(t.pvalue), "bootstrap_95": bootstrap_ci(initial, searched)}


def plot_spaces(initial: list[float], searched: list[float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    rng = np.random.default_rng(0)
    for x, errs in enumerate((initial, searched)):
        ax.scatter(x + rng.uniform(-0.08, 0.08, len(errs)), errs, alpha=0.7)
        ax.errorbar(x + 0.25, statistics.mean(errs), yerr=statistics.stdev(errs) / math.sqrt(len(errs)), fmt="o",
                    color="k", capsize=4)
    ax.set_xticks([0, 1], ["initial space", "searched space"])
    ax.set_ylabel("standalone test error (%)")
    ax.set_title(f"{len(initial)} + {len(searched)} archs in the params band (mean +- SE)")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def plot_archs(rows: dict[str, list[float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(rows)
    means = [statistics.mean(rows[n]) for n in names]
    stds = [statistics.stdev(rows[n]) if len(rows[n]) > 1 else 0 for n in names]
    ax.bar(range(len(names)), means, yerr=stds, capsize=6, color=["tab:green", "tab:blue", "tab:gray"])
    for i, n in enumerate(names):
        ax.scatter([i] * len(rows[n]), rows[n], color="k", s=12, zorder=3)
    lo = min(min(v) for v in rows.values())
    ax.set_ylim(lo - 1.5, max(max(v) for v in rows.values()) + 0.8)
    ax.set_xticks(range(len(names)), [textwrap.fill(n, 22) for n in names], fontsize=8)
    ax.set_ylabel("test top-1, standalone (%)")
    ax.set_title("retrained with the same recipe (mean +- std over seeds)")
    ax.grid(alpha=0.3, axis="y")
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--demo", default="logs/demo")
    p.add_argument("--out", default="logs/bench/search_evidence")
    p.add_argument("--constraints", default="band_1m", help="a conf/constraints/ file: the band of every comparison")
    p.add_argument("--archs", type=int, default=12, help="standalone archs per space (the space claim)")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2], help="seeds of (a), (b), (c)")
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=2, help="standalone recipe: epochs")
    p.add_argument("--max-train", default="20000", help="standalone recipe: images per epoch, or 'all'")
    p.add_argument("--jobs", type=int, default=2, help="standalone runs side by side")
    args = p.parse_args()
    if args.archs < 2:
        p.error(f"--archs must be >= 2 (a standard error needs two), got {args.archs}")
    demo, out = Path(args.demo), Path(args.out)
    for need in ("1_space/search_state.json", "1_space/searched_space.yaml", "3_evolution/top/top1.yaml"):
        if not (demo / need).is_file():
            sys.exit(f"--demo {demo}: {need} is missing; run `make demo` first")
    out.mkdir(parents=True, exist_ok=True)
    state = json.loads((demo / "1_space" / "search_state.json").read_text())
    initial = SearchSpace.from_dict(state["iterations"][0]["space"])
    searched = SearchSpace.from_yaml(demo / "1_space" / "searched_space.yaml")
    constraints = constraints_of(args.constraints, initial)
    recipe = Recipe(args.epochs, args.max_train)

    # (b): the initial space's supernet, trained like the demo's stage 2, then random search on it
    times = demo_seconds(demo)
    initial.to_yaml(out / "conf" / "space" / "initial.yaml")  # the demo's initial space as a config option
    space_override = [f"hydra.searchpath=[file://{(out / 'conf').resolve()}]", "space=initial"]
    times["(b) supernet of the initial space"] = call(
        "train.py", *space_override, *DATA, "trainer.max_epochs=3", out=out / "initial_supernet", done="finished.json")
    evolution = json.loads((demo / "3_evolution" / "result.json").read_text())
    population = 20
    times["(b) random search"] = call(
        "search.py", "search=random", *space_override, *DATA,
        f"supernet={out / 'initial_supernet' / 'checkpoints' / 'last.ckpt'}", f"constraints={args.constraints}",
        f"search.population={population}", f"search.generations={evolution['evaluated'] // population}",
        out=out / "random", done="result.json")
    random_result = json.loads((out / "random" / "result.json").read_text())
    contenders = {"(a) S3: space search + evolution": Arch.from_yaml(demo / "3_evolution" / "top" / "top1.yaml"),
                  "(b) random search, initial space": Arch.from_yaml(out / "random" / "top" / "top1.yaml"),
                  "(c) Swin-style hand design": hand_design(constraints, initial)}

    # standalone training: the three contenders first, then both spaces' samples
    samples = {name: sample_archs(space, constraints_of(args.constraints, space), args.archs,
                                  f"ranking:{args.sample_seed}")
               for name, space in (("initial", initial), ("searched", searched))}
    jobs = [(a, s) for a in contenders.values() for s in args.seeds]
    jobs += [(a, args.seeds[0]) for archs in samples.values() for a in archs]
    results = train_all(jobs, recipe, parallel=args.jobs)
    arch_runs = results[: len(contenders) * len(args.seeds)]
    space_runs = results[len(arch_runs):]
    top1 = {name: [r["top1"] for r in arch_runs[i * len(args.seeds):(i + 1) * len(args.seeds)]]
            for i, name in enumerate(contenders)}
    errors = {"initial": [100 - r["top1"] for r in space_runs[: args.archs]],
              "searched": [100 - r["top1"] for r in space_runs[args.archs:]]}
    claim = space_claim(errors["initial"], errors["searched"], top_k=max(1, args.archs // 4))
    pooled_std = math.sqrt(statistics.mean(statistics.variance(v) for v in top1.values())) if len(args.seeds) > 1 else 0
    report = {
        "recipe": recipe.name, "constraints": str(constraints), "seeds": args.seeds,
        "space_claim": {**claim, "archs": {k: [str(a) for a in v] for k, v in samples.items()},
                        "errors": errors,
                        "params": {k: [constraints.cost(a)["params"] for a in v] for k, v in samples.items()},
                        "flops": {k: [constraints.cost(a)["flops"] for a in v] for k, v in samples.items()}},
        "arch_claim": {name: {"arch": str(a), "params": constraints.cost(a)["params"],
                              "flops": constraints.cost(a)["flops"], "top1": top1[name],
                              "mean": statistics.mean(top1[name]),
                              "std": statistics.stdev(top1[name]) if len(top1[name]) > 1 else 0.0,
                              "retrain_seconds": statistics.mean(r["seconds"] for r in arch_runs
                                                                 if r["arch"] == str(a))}
                       for name, a in contenders.items()},
        "pooled_seed_std": pooled_std,
        "evaluations": {"(a) evolution": evolution["evaluated"], "(b) random": random_result["evaluated"]},
        "stage_seconds": times,
    }
    (out / "search_evidence.json").write_text(json.dumps(report, indent=2))
    plot_spaces(errors["initial"], errors["searched"], out / "space_claim.png")
    plot_archs(top1, out / "arch_claim.png")

    e = claim
    print(f"\nSpace claim: {args.archs} archs per space, {constraints}, standalone {recipe.name}, seed {args.seeds[0]}")
    print("| space | mean test error (%) | top-tier error (%) | E-T Error Q (%) | mean params | mean FLOPs (MACs) |")
    print("|---|---|---|---|---|---|")
    sc = report["space_claim"]
    for name in ("initial", "searched"):
        print(f"| {name} | {e[name]['q_e']:.2f} | {e[name]['q_t']:.2f} (best {e[name]['k']}) | {e[name]['q']:.2f} | "
              f"{statistics.mean(sc['params'][name]):,.0f} | {statistics.mean(sc['flops'][name]) / 1e6:.1f}M |")
    print(f"difference of mean error (initial - searched): {e['mean_error_difference']:+.2f} points, SE "
          f"{e['standard_error']:.2f} ({e['difference_in_se']:.1f} SE; target > 2), Welch p = {e['welch_p']:.3g}, "
          f"bootstrap 95% [{e['bootstrap_95'][0]:+.2f}, {e['bootstrap_95'][1]:+.2f}]")
    print(f"\nArchitecture claim: {constraints}, seeds {args.seeds}, pooled seed std {pooled_std:.2f}")
    print("| architecture | params | FLOPs (MACs) | test top-1 (%), mean +- std | seeds | retrain (min) |")
    print("|---|---|---|---|---|---|")
    for name, r in report["arch_claim"].items():
        print(f"| {name}: `{r['arch']}` | {r['params']:,} | {r['flops'] / 1e6:.1f}M | {r['mean']:.2f} +- {r['std']:.2f} | "
              f"{' / '.join(f'{t:.2f}' for t in r['top1'])} | {r['retrain_seconds'] / 60:.1f} |")
    print("evaluations:", report["evaluations"])
    print("stage wall times (min):", ", ".join(f"{k} {v / 60:.1f}" for k, v in times.items()))
    print(f"plots: {out / 'space_claim.png'}, {out / 'arch_claim.png'}")


if __name__ == "__main__":
    main()
