"""The space-evolution move rule on synthetic errors: what it moves under pure noise, and its power
to detect a real effect, per preset, for the significant rule (the default), the paper's plain
threshold rule, and the significant rule confirmed on a second supernet (`search.confirm`: here a
second error draw of the same pool, the same true errors plus independent noise).

Per preset the pools are drawn exactly as the space search draws them (`sample_pool` with the
preset's space, constraints, N and subspace). Null: every arch's error is 20 + noise. Power: one
dimension lowers the error by `effect` points from the smallest to the largest choice of its range
(stage 3 depth: a stage dimension; stage 3 MLP ratio: a block dimension), plus the same noise; a
trial detects it when that dimension moves the right way. `noise` is the per-arch standard
deviation around the true error. `make demo`'s iteration-0 pool measured 1.1 points of residual
after an additive model of every dimension and 1.5 of binomial error of one arch's top-1 on the
1,000-image search split (`--noise-from logs/demo/1_space`): 1.5 is the measured noise; 3.0 is the
pool's whole spread, every dimension's real effect counted as noise, an upper bound.

    python bench/move_rule.py                     # demo, demo_before, space_t (rows cached in bench/results/move_rule.csv)
    python bench/move_rule.py --preset space_s space_b
    python bench/move_rule.py --report            # the tables from the cached rows only
    python bench/move_rule.py --noise-from logs/demo/1_space   # also the noise its pools measured
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rows import append_row, read_rows  # noqa: E402

from s3.constraints import Constraints  # noqa: E402
from s3.search.et_error import fit_dimensions  # noqa: E402
from s3.search.pool import sample_pool  # noqa: E402
from s3.search.shift import MoveRule, confirmed, evolve_space  # noqa: E402
from s3.search.significance import change_tests  # noqa: E402
from s3.space import SearchSpace  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "move_rule.csv"
COLUMNS = ("preset", "samples", "top_k", "subspace", "noise", "rule", "kind", "target", "effect", "trials",
           "moved_mean", "moved_se", "detected")
PRESETS = {  # name: (space, params band, num_classes, N, K, subspace)
    "demo": ("wide", (7.5e5, 1.0e6), 10, 160, 16, "stage_uniform"),
    "demo_200": ("wide", (7.5e5, 1.0e6), 10, 200, 20, "stage_uniform"),
    "demo_before": ("wide", (7.5e5, 1.0e6), 10, 100, 10, "pinned"),  # the demo's earlier pool
    "space_t": ("initial_t", (20e6, 30e6), 1000, 1000, 50, "pinned"),
    "space_s": ("initial_s", (40e6, 50e6), 1000, 1000, 50, "pinned"),
    "space_b": ("initial_b", (60e6, 75e6), 1000, 1000, 50, "pinned"),
}
TARGETS = ((2, "depth"), (2, "mlp_ratio"))
RULES = ("significant", "threshold", "confirmed")  # confirmed: significant on two error draws, the same move in both
SECOND_DRAW = 100_000  # the second draw's noise seed is the trial's plus this
EFFECTS = (1.0, 2.0, 3.0, 4.0)


def key(row: dict) -> tuple:
    return tuple(str(row[c]) for c in COLUMNS[:9])


def trial(space, constraints, n, k, subspace, noise, target, effect, seed, resamples,
          rules=RULES) -> dict[str, list]:
    """One pool, one error draw (two for `confirmed`): per rule, the dimensions it moved."""
    pool = sample_pool(space, constraints, n, f"bench:{seed}", subspace)

    def draw(noise_seed: int) -> list[float]:
        errors = 20.0 + noise * np.random.default_rng(noise_seed).standard_normal(len(pool))
        if target is not None:
            choices = space.stages[target[0]].choices(target[1])
            lo, hi = min(choices), max(choices)
            value = np.array([np.mean(m.arch.values(*target)) for m in pool])
            errors = errors - effect * (value - lo) / (hi - lo)
        return list(errors)

    def decisions(errors: list[float], rule: str):
        fits = fit_dimensions(space, pool, errors, k)
        return evolve_space(space, fits, MoveRule(rule), change_tests(space, pool, errors, k, resamples, seed))[1]

    first = draw(seed)
    out = {rule: decisions(first, rule) for rule in ("significant", "threshold") if rule in rules}
    if "confirmed" in rules:
        out["confirmed"] = confirmed(out["significant"] if "significant" in out else decisions(first, "significant"),
                                     decisions(draw(seed + SECOND_DRAW), "significant"))
    return {rule: [(d.stage, d.dimension, d.action) for d in ds if d.moved] for rule, ds in out.items()}


def measure(preset: str, noise: float, trials: int, resamples: int, done: set) -> None:
    space_name, band, classes, n, k, subspace = PRESETS[preset]
    space = SearchSpace.from_yaml(ROOT / "conf" / "space" / f"{space_name}.yaml")
    constraints = Constraints(space, params={"min": band[0], "max": band[1]}, num_classes=classes)
    jobs = [("null", None, 0.0)] + [("power", t, e) for t in TARGETS for e in EFFECTS]
    for kind, target, effect in jobs:
        base = {"preset": preset, "samples": n, "top_k": k, "subspace": subspace, "noise": noise, "kind": kind,
                "target": f"stage {target[0] + 1} {target[1]}" if target else "-", "effect": effect}
        todo = [r for r in RULES if key({**base, "rule": r}) not in done]
        if not todo:
            continue
        t0 = time.time()
        outcomes = [trial(space, constraints, n, k, subspace, noise, target, effect, seed, resamples, todo)
                    for seed in range(trials)]
        for rule in todo:
            moved = np.array([len(o[rule]) for o in outcomes])
            detected = "" if target is None else float(np.mean(
                [any((s, d, a) == (*target, "up") for s, d, a in o[rule]) for o in outcomes]))
            row = {**base, "rule": rule, "trials": trials, "moved_mean": float(moved.mean()),
                   "moved_se": float(moved.std(ddof=1) / np.sqrt(trials)), "detected": detected}
            append_row(RESULTS, COLUMNS, row)
            done.add(key(row))
        print(f"{preset} noise {noise} {kind} {base['target']} {effect}: {time.time() - t0:.0f} s", flush=True)


def demo_noise(space_dir: Path) -> tuple[float, float, float]:
    """What the demo's iteration-0 pool measured, in error points: the residual standard deviation
    of its archs' search-split errors after an additive model of every dimension's choices (the
    per-arch noise around the true effects), the binomial error of one arch's top-1 on the split,
    and the pool's whole spread (all dimensions' effects included)."""
    from s3.space import DIMENSIONS, Arch

    rows = list(csv.DictReader(open(space_dir / "iter0" / "archs.csv")))
    archs = [Arch.from_dict(json.loads(r["arch_json"])) for r in rows]
    errors = np.array([100 - float(r["top1"]) for r in rows])
    columns = [np.ones(len(errors))]
    for s in range(archs[0].num_stages):
        for dim in DIMENSIONS:
            values = np.array([np.mean(a.values(s, dim)) for a in archs])
            columns += [(values == v).astype(float) for v in np.unique(values)[1:]]
    X = np.column_stack(columns)
    residual = errors - X @ np.linalg.lstsq(X, errors, rcond=None)[0]
    split = json.loads((space_dir / "search_split.json").read_text())["search_indices"]
    accuracy = 1 - errors.mean() / 100
    return (float(np.sqrt((residual ** 2).sum() / (len(errors) - X.shape[1]))),
            float(100 * np.sqrt(accuracy * (1 - accuracy) / len(split))), float(errors.std(ddof=1)))


def report(rows: list[dict]) -> str:
    lines: list[str] = []
    say = lines.append
    say("\nMoves under pure noise (mean dimensions moved per iteration, of about 20 tested; ± SE over trials):\n")
    say("| preset | N, K, pool | noise (points) | significant rule | plain threshold rule | significant, confirmed "
        "on a 2nd draw |")
    say("|---|---|---|---|---|---|")
    null = [r for r in rows if r["kind"] == "null"]
    for (preset, noise) in sorted({(r["preset"], float(r["noise"])) for r in null}):
        by = {r["rule"]: r for r in null if r["preset"] == preset and float(r["noise"]) == noise}
        r0 = next(iter(by.values()))
        cells = [f"{float(by[x]['moved_mean']):.2f} ± {float(by[x]['moved_se']):.2f}" if x in by else "-"
                 for x in RULES]
        say(f"| {preset} | {r0['samples']}, {r0['top_k']}, {r0['subspace']} | {noise} | " + " | ".join(cells) + " |")
    zero = sorted({int(r["trials"]) for r in null if float(r["moved_mean"]) == 0})
    if zero:  # no move in n trials: the rate's one-sided 95 % Poisson bound is -ln(0.05) / n
        say("\n0.00 ± 0.00: no move in any trial; with " + ", ".join(map(str, zero)) + " trials the rate's one-sided "
            "95 % upper bound is " + ", ".join(f"{-math.log(0.05) / n:.2f}" for n in zero) + " moves per iteration.")
    say("\nPower (share of trials that move the dimension the right way) and the smallest effect detected "
          "with >= 80 % power:\n")
    say("| preset | noise | dimension | rule | " + " | ".join(f"{e:g} points" for e in EFFECTS) +
          " | smallest at 80 % |")
    say("|---|---|---|---|" + "---|" * (len(EFFECTS) + 1))
    power = [r for r in rows if r["kind"] == "power"]
    for (preset, noise, target, rule) in sorted({(r["preset"], float(r["noise"]), r["target"], r["rule"])
                                                 for r in power}):
        by = {float(r["effect"]): float(r["detected"]) for r in power if (r["preset"], float(r["noise"]),
                                                                           r["target"], r["rule"]) ==
              (preset, noise, target, rule)}
        smallest = next((f"{e:g}" for e in EFFECTS if by.get(e, 0) >= 0.8), f"> {EFFECTS[-1]:g}")
        say(f"| {preset} | {noise} | {target} | {rule} | " + " | ".join(
            f"{by[e]:.2f}" if e in by else "-" for e in EFFECTS) + f" | {smallest} |")
    return "\n".join(lines).strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", nargs="*", default=["demo", "demo_before", "space_t"], choices=list(PRESETS))
    p.add_argument("--noise", type=float, nargs="*", default=[1.5, 3.0])
    p.add_argument("--noise-from", type=Path, help="a space-search run: print the noise its iteration-0 pool measured")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--resamples", type=int, default=300)
    p.add_argument("--report", action="store_true", help="print the tables from bench/results only")
    args = p.parse_args()
    if not args.report:
        noises = list(args.noise)
        if args.noise_from:
            residual, binomial, spread = demo_noise(args.noise_from)
            print(f"{args.noise_from}/iter0: residual sd {residual:.2f} points after an additive model of every "
                  f"dimension, binomial sd of one arch {binomial:.2f}, whole spread {spread:.2f}")
        done = {key(r) for r in read_rows(RESULTS)}
        for preset in args.preset:
            for noise in noises:
                measure(preset, noise, args.trials, args.resamples, done)
    print(report(read_rows(RESULTS)))
    print(json.dumps({"rows": len(read_rows(RESULTS)), "file": str(RESULTS.relative_to(ROOT))}))


if __name__ == "__main__":
    main()
