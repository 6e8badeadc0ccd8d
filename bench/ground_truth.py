"""A ground-truth library of the ablation's budget band (issue 43, section 3): the first 250 archs
(150 planned, extended for the fidelity's target SE) of the fixed sequence `band:0` (space=wide
inside constraints=band_1m_macs) trained standalone with the ablation's recipe, seed 0 for all,
seed 1 for the first 30. The plan: bench/README.md.

    taskset -c 0 python bench/ground_truth.py --jobs 1     # trains what the rows lack (resumable)
    python bench/ground_truth.py --score <the study's --out>  # scores the library with its finished supernets
    python bench/ground_truth.py --score <out> --follow 10    # ... and again every 10 minutes, as seeds finish
    python bench/ground_truth.py --report                  # the noise, ceilings and fidelity, from the rows

Rows: bench/results/ground_truth.csv (one per run, appended as it ends); library_scores.csv (each
finished supernet of bench/search_evidence.py's study: every library arch's inherited top-1 on the
search split the searches rank on).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kendall import bootstrap_se, kendall, kendall_resampled, resample_counts  # noqa: E402
from rows import append_row, read_rows  # noqa: E402
from standalone import ROOT, Recipe, constraints_of, sample_archs, train_all  # noqa: E402

from s3.space import SearchSpace  # noqa: E402

ROWS = ROOT / "bench" / "results" / "ground_truth.csv"
COLUMNS = ["arch", "params", "macs", "seed", "test_top1", "recipe", "seconds"]
SCORES = ROOT / "bench" / "results" / "library_scores.csv"
SCORE_COLUMNS = ["search_seed", "supernet", "arch", "search_top1"]
LIBRARY, NOISE = 250, 30  # 150 planned; 250 for a bootstrap SE <= 0.05 (bench/README.md, the amendment)
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


def finished_supernets(out: Path) -> dict[tuple[str, str], tuple[Path, Path | None]]:
    """(search seed, supernet kind) -> (checkpoint, the space file of a kind that holds only part of
    the library, else None), for every supernet of the study under `out` whose training finished (a
    run still training is left for a later call); the kinds that score the whole library first."""
    whole = {"autoformer": "autoformer_supernet", "band": "band_supernet", "s3_iter0": "s3_space/iter0"}
    part = {"s3_searched": ("s3_supernet", "s3_space/searched_space.yaml"),
            **{f"s3_iter{i}": (f"s3_space/iter{i}", f"s3_space/iter{i}/space.yaml") for i in range(1, 4)}}
    runs = {**{k: (r, None) for k, r in whole.items()}, **part}
    return {(d.name.removeprefix("seed"), kind): (d / run / "checkpoints" / "last.ckpt", space and d / space)
            for kind, (run, space) in runs.items() for d in sorted(out.glob("seed*"), key=lambda d: int(d.name[4:]))
            if (d / run / "finished.json").is_file()}


# supernet recipes beside the study's, each the `autoformer` supernet's run (the initial space, make demo's
# data, search seed 3, S3's total 6 epochs) with one lever changed: the levers of the 30-arch ranking
# fidelity table (bench/README.md), scaled to these 6 epochs
RECIPES = {"sandwich": ["model.sampling.sandwich=true"],
           "sandwich_distill": ["model.sampling.sandwich=true", "model.sampling.distill=true"],
           "random_59k": ["data.max_train=null"],
           "sandwich_59k": ["data.max_train=null", "model.sampling.sandwich=true"]}
RECIPE_SEED = 3
# few-shot NAS: the seed's `autoformer` supernet split by stage 3's depth, each part fine-tuned 1 epoch
FEW_SHOT, FEW_SHOT_STAGE = "few_shot", 2
FEW_SHOT_TUNE = ["trainer.max_epochs=1", "model.optim.warmup_epochs=0.1"]


def score_with(seed: str, kind: str, ckpt: Path, holds: SearchSpace | None, split_cache: list) -> None:
    """Every library arch the supernet holds that the rows lack, scored and appended as it ends; a
    supernet of part of the space (`holds`) scores the archs that part holds, and its checkpoint is
    not loaded when it holds none of them."""
    from search_evidence import inherited_top1, search_split

    have = {(r["search_seed"], r["supernet"], r["arch"]) for r in read_rows(SCORES)}
    todo = [a for a in library() if (seed, kind, str(a)) not in have]
    if holds is not None:
        todo = [a for a in todo if holds.contains(a)]
    if not todo:
        return
    split_cache[:] = split_cache or [search_split()]
    t0 = time.time()
    for a, top1 in inherited_top1(ckpt, split_cache[0], todo):
        append_row(SCORES, SCORE_COLUMNS, {"search_seed": seed, "supernet": kind, "arch": str(a),
                                           "search_top1": f"{top1:.2f}"})
    print(f"[{time.strftime('%H:%M:%S')}] seed {seed} {kind}: {len(todo)} archs scored in {time.time() - t0:.0f} s",
          flush=True)


def score(out: Path) -> None:
    split: list = []
    for (seed, kind), (ckpt, space_file) in finished_supernets(out).items():
        score_with(seed, kind, ckpt, space_file and SearchSpace.from_yaml(space_file), split)


def score_recipes(out: Path) -> None:
    """Train the few-shot split and each of RECIPES (resumable, skipped when finished) and score the
    library with them."""
    from search_evidence import DATA, call

    split: list = []
    one_shot = out / f"seed{RECIPE_SEED}" / "autoformer_supernet" / "checkpoints" / "last.ckpt"
    if not one_shot.is_file():
        sys.exit(f"--recipes {out}: few-shot starts from {one_shot}, which the study has not trained yet")
    wide = SearchSpace.from_yaml(ROOT / "conf" / "space" / "wide.yaml")
    for depth in wide.stages[FEW_SHOT_STAGE].depth:
        run = out / "recipes" / FEW_SHOT / f"stage{FEW_SHOT_STAGE + 1}_depth{depth}"
        call("train.py", "space=wide", *DATA, f"seed={RECIPE_SEED}", f"init_from={one_shot}",
             f"space.stages.{FEW_SHOT_STAGE}.depth=[{depth}]", *FEW_SHOT_TUNE, out=run, done="finished.json")
        score_with(str(RECIPE_SEED), FEW_SHOT, run / "checkpoints" / "last.ckpt",
                   wide.replace(FEW_SHOT_STAGE, "depth", [depth]), split)
    for name, overrides in RECIPES.items():
        run = out / "recipes" / name
        call("train.py", "space=wide", *DATA, f"seed={RECIPE_SEED}", "trainer.max_epochs=6", *overrides,
             out=run, done="finished.json")
        score_with(str(RECIPE_SEED), name, run / "checkpoints" / "last.ckpt", None, split)


def truth() -> dict[str, dict[str, float]]:
    """arch -> retraining seed -> standalone test top-1."""
    by_arch: dict[str, dict[str, float]] = {}
    for r in read_rows(ROWS):
        if r["recipe"] == RECIPE.name:
            by_arch.setdefault(r["arch"], {})[r["seed"]] = float(r["test_top1"])
    return by_arch


MIN_PAIRS = 20  # archs with both seeds before the noise, and so the ceilings, are estimated
MIN_SCORED = 10  # library archs a supernet seed must have scored to count in the fidelity


def reliability(by_arch: dict[str, dict[str, float]], resamples: int = 2000) -> dict | None:
    """How much of the band's top-1 spread is the arch, not the seed: one seed's reliability r1 =
    1 - noise^2 / var(seed-0 top-1), the 2-seed mean's r2 = 2 r1 / (1 + r1) (Spearman-Brown), and
    the Kendall tau a noise-free predictor is expected to reach against each: for normal scores
    tau = (2 / pi) asin(rho), rho = sqrt(r). Two seeds' own agreement (rho = r1) understates it.
    The interval is a bootstrap over the archs (2.5 and 97.5 percentiles)."""
    import numpy as np

    both = np.array([(v["0"], v["1"]) for v in by_arch.values() if {"0", "1"} <= set(v)])
    seed0 = np.array([v["0"] for v in by_arch.values() if "0" in v])
    if len(both) < MIN_PAIRS:
        return None

    def figures(pairs, singles):
        noise2 = np.var(pairs[:, 0] - pairs[:, 1], ddof=1) / 2
        one = max(0.0, 1 - noise2 / np.var(singles, ddof=1))
        two = 2 * one / (1 + one)
        return one, two, 2 / math.pi * math.asin(math.sqrt(one)), 2 / math.pi * math.asin(math.sqrt(two))

    rng = np.random.default_rng(0)
    boot = np.array([figures(both[rng.integers(0, len(both), len(both))], seed0[rng.integers(0, len(seed0), len(seed0))])
                     for _ in range(resamples)])
    lo, hi = np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0)
    one, two, c1, c2 = figures(both, seed0)
    return {"noise": math.sqrt(np.var(both[:, 0] - both[:, 1], ddof=1) / 2), "pairs": len(both),
            "one": one, "two": two, "ceiling_one": c1, "ceiling_two": c2,
            "interval_one": (lo[2], hi[2]), "interval_two": (lo[3], hi[3])}


def fidelity(by_arch: dict[str, dict[str, float]], resamples: int = 2000) -> list[dict]:
    """Per supernet kind: the mean over its supernet seeds of the Kendall tau between its inherited
    top-1 and the seed-0 standalone top-1 over the library archs that seed's supernet scored, and
    params' and MACs' taus over the same archs per seed, averaged alike; the SE is a bootstrap over
    library archs (one resample for every seed), the supernet seeds held fixed."""
    import numpy as np

    from s3.space import Arch

    archs = [str(a) for a in library() if "0" in by_arch.get(str(a), {})]
    index = {a: i for i, a in enumerate(archs)}
    cost = constraints_of(CONSTRAINTS, SearchSpace.from_yaml(ROOT / "conf" / "space" / "wide.yaml"))
    params = np.array([cost.cost(Arch.parse(a))["params"] for a in archs], dtype=float)
    macs = np.array([cost.cost(Arch.parse(a))["macs"] for a in archs], dtype=float)
    top1 = np.array([by_arch[a]["0"] for a in archs])
    scores: dict[str, dict[str, np.ndarray]] = {}
    for r in read_rows(SCORES):
        if r["arch"] in index:
            scores.setdefault(r["supernet"], {}).setdefault(r["search_seed"], np.full(len(archs), np.nan))[
                index[r["arch"]]] = float(r["search_top1"])
    counts = resample_counts(len(archs), resamples)
    out = []
    for kind, by_seed in sorted(scores.items()):
        held_by = sorted(((seed, x) for seed, x in by_seed.items() if (~np.isnan(x)).sum() >= MIN_SCORED),
                         key=lambda sx: int(sx[0]))
        held = [x for _, x in held_by]
        if not held:
            continue
        taus = {"supernet": [], "params": [], "macs": []}
        for x in held:
            mine = counts * ~np.isnan(x)
            taus["supernet"].append(kendall_resampled(np.nan_to_num(x), top1, mine))
            taus["params"].append(kendall_resampled(params, top1, mine))
            taus["macs"].append(kendall_resampled(macs, top1, mine))
        t, p, m = (np.mean(taus[k], axis=0) for k in ("supernet", "params", "macs"))
        out.append({"kind": kind, "seeds": [seed for seed, _ in held_by],
                    "archs": "/".join(str(int((~np.isnan(x)).sum())) for x in held),
                    "tau": t[0], "se": bootstrap_se(t), "params": p[0], "macs": m[0],
                    "minus_params": t[0] - p[0], "minus_params_se": bootstrap_se(t - p)})
    return out


def seed_style(seed: str) -> dict:
    """One colour and marker per supernet seed, the same in every panel: tab20's dark hues and
    circles for seeds 0-9, its light hues and triangles for 10-19 (a 10-colour cycle would give
    seeds 4 and 14 one colour)."""
    from matplotlib import colormaps

    if not seed:
        return {}
    n = int(seed) % 20
    return {"color": colormaps["tab20"](2 * (n % 10) + n // 10), "marker": "o" if n < 10 else "^"}


def plot(by_arch: dict[str, dict[str, float]], fid: list[dict], path: Path) -> None:
    """Per supernet kind, every scored library arch: inherited top-1 (one colour per supernet seed)
    against its seed-0 standalone top-1, the kind's tau in the title; params first."""
    from matplotlib.figure import Figure

    from s3.space import Arch

    archs = [a for a in by_arch if "0" in by_arch[a]]
    cost = constraints_of(CONSTRAINTS, SearchSpace.from_yaml(ROOT / "conf" / "space" / "wide.yaml"))
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for r in read_rows(SCORES):
        if r["arch"] in by_arch and "0" in by_arch[r["arch"]]:
            scores.setdefault(r["supernet"], {}).setdefault(r["search_seed"], {})[r["arch"]] = float(r["search_top1"])
    panels = [("params count", {"": {a: cost.cost(Arch.parse(a))["params"] / 1e6 for a in archs}}, "params (M)",
               f"tau {fid[0]['params']:.2f}" if fid else "")]
    panels += [(f["kind"], {s: scores[f["kind"]][s] for s in f["seeds"]}, "inherited top-1 on the search split (%)",
                f"tau {f['tau']:.2f} ± {f['se']:.2f}, {len(f['seeds'])} supernet seed(s)") for f in fid]
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (name, by_seed, xlabel, stat) in zip(axes.flat, panels):
        for seed, xs in sorted(by_seed.items(), key=lambda kv: int(kv[0] or -1)):  # seeds in number order
            ax.scatter(list(xs.values()), [by_arch[a]["0"] for a in xs], s=10, alpha=0.6, **seed_style(seed),
                       label=f"seed {seed}" if seed else None)
        ax.set_title(f"{name}\n{stat}", fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("standalone top-1, seed 0 (%)", fontsize=8)
        if len(by_seed) > 1:
            ax.legend(fontsize=6, loc="lower right", ncol=2, framealpha=0.6, handletextpad=0.2, columnspacing=0.6)
    fig.suptitle(f"Ranking fidelity against the ground-truth library ({len(archs)} archs of the band)", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def reruns(by_arch: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    """|library top-1 - the study's| for each arch, seed and recipe both retrained (the study's
    `band` archs), split into the pilot's rows (search seeds 0-2, earlier commits) and the study's."""
    from search_evidence import ROWS as STUDY_ROWS

    out: dict[str, list[float]] = {"pilot": [], "study": []}
    for r in read_rows(STUDY_ROWS):
        mine = by_arch.get(r["arch"], {}).get(r["retrain_seed"])
        if r["method"] == "band" and r["recipe"] == RECIPE.name and mine is not None:
            out["study" if r["search_seed"] and int(r["search_seed"]) >= 3 else "pilot"].append(
                round(abs(mine - float(r["test_top1"])), 2))
    return out


def report(plots: Path | None = None, link: str = "library_fidelity.png") -> str:
    """The library's figures as markdown; with `plots`, draws library_fidelity.png there and shows
    it at `link` (the path from the page that shows it)."""
    by_arch = truth()
    seed0 = [v["0"] for v in by_arch.values() if "0" in v]
    both = sum({"0", "1"} <= set(v) for v in by_arch.values())
    lines = [f"{len(seed0)} of {LIBRARY} archs trained with seed 0, {both} of {NOISE} with seed 1 too "
             f"({RECIPE.name}, {CONSTRAINTS})."]
    if len(seed0) >= 2:
        lines.append(f"\n- Seed-0 top-1 across the band: mean {statistics.fmean(seed0):.2f} %, SD "
                     f"{statistics.stdev(seed0):.2f}, range {min(seed0):.2f}-{max(seed0):.2f}.")
    rel = reliability(by_arch)
    if rel:
        pairs = [(v["0"], v["1"]) for v in by_arch.values() if {"0", "1"} <= set(v)]
        lines += [f"- Seed 0 against seed 1 on {rel['pairs']} archs: Kendall tau {kendall(*zip(*pairs)):.2f}; one "
                  f"run's SD {rel['noise']:.2f} points.",
                  f"- The arch's share of the band's top-1 variance: {rel['one']:.2f} for one seed, {rel['two']:.2f} "
                  f"for the 2-seed mean. A noise-free predictor is expected to rank one seed's top-1 at Kendall tau "
                  f"{rel['ceiling_one']:.2f} (95 % bootstrap interval {rel['interval_one'][0]:.2f}-"
                  f"{rel['interval_one'][1]:.2f}), the 2-seed mean at {rel['ceiling_two']:.2f} "
                  f"({rel['interval_two'][0]:.2f}-{rel['interval_two'][1]:.2f}): the ceilings below."]
    elif both:
        lines.append(f"- The noise and the ceilings wait for {MIN_PAIRS} archs with both seeds ({both} now).")
    again = {k: v for k, v in reruns(by_arch).items() if v}
    if again:
        lines.append("- The same arch, seed and recipe retrained twice (the library and the study's `band` archs): "
                     + "; ".join(f"{k}'s rows, {len(v)} archs: identical in {sum(x == 0 for x in v)}, the median "
                                 f"difference {statistics.median(v):.2f} points, the largest {max(v):.2f}"
                                 for k, v in again.items())
                     + ".")
    fid = fidelity(by_arch)
    if fid:
        lines += ["", "Ranking fidelity against the library (Kendall tau with the seed-0 standalone top-1; the mean "
                      "over the study's supernet seeds; ± a bootstrap SE over library archs, the supernet seeds held "
                      "fixed" + (f"; a noise-free predictor: {rel['ceiling_one']:.2f}" if rel else "") + "). `autoformer`"
                      " is the initial space's supernet (S3's total epochs; `random` and `autoformer_faithful` search "
                      "it), `band` the band-trained one; archs: those each seed's supernet scored (a searched space's "
                      f"holds only part of the library; a seed with fewer than {MIN_SCORED} is left out):", "",
                  "| supernet | search seeds | archs | supernet tau | params tau | MACs tau | supernet minus params |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {f['kind']} | {', '.join(f['seeds'])} | {f['archs']} | {f['tau']:.2f} ± {f['se']:.2f} | {f['params']:.2f} | "
                  f"{f['macs']:.2f} | {f['minus_params']:+.2f} ± {f['minus_params_se']:.2f} |" for f in fid]
        if plots:
            plot(by_arch, fid, plots / "library_fidelity.png")
            lines += ["", f"![ranking fidelity against the library]({link})"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=1, help="standalone runs side by side (1 per core)")
    p.add_argument("--root", default="logs/bench/standalone", help="the standalone runs' cache")
    p.add_argument("--score", type=Path, metavar="OUT", help="score the library with the study's finished supernets")
    p.add_argument("--recipes", type=Path, metavar="OUT", help="train RECIPES' supernets into OUT/recipes/ and score "
                   "the library with them")
    p.add_argument("--follow", type=float, metavar="MINUTES", help="with --score: score again every MINUTES, as the "
                   "study's seeds finish their supernets (until interrupted)")
    p.add_argument("--report", action="store_true", help="only the figures, from the rows")
    args = p.parse_args()
    if args.follow is not None and not args.score:
        p.error("--follow goes with --score")
    if args.score:
        score(args.score)
        while args.follow is not None:
            time.sleep(60 * args.follow)
            score(args.score)
    elif args.recipes:
        score_recipes(args.recipes)
    elif not args.report:
        train(args.jobs, args.root)
    print(report())


if __name__ == "__main__":
    main()
