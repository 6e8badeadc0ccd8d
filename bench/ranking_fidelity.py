"""Ranking fidelity of supernets: Kendall tau between the top-1 of sampled archs with inherited
supernet weights and their top-1 when trained standalone with one and the same budget (both on
the Fashion-MNIST test set), with a scatter plot per supernet beside the params-only baseline.

Each arch is trained standalone once per seed (`--seeds`); its ground truth is the mean over
seeds, and with two seeds or more the tau between the seeds is printed too: how much of its
own order a ground truth that noisy keeps, a rough ceiling for any supernet. The tau of the
params count with the ground truth says how much of the order size alone explains: a supernet
that ranks no better than that adds nothing.

Every measurement is a row of bench/results/ranking_fidelity.csv (figure, arch, source, seed,
top-1), appended as it finishes; a rerun skips the rows it finds, and `--report` recomputes every
figure's taus and redraws its plot (docs/bench/ranking_fidelity_<figure>.png) from the rows alone.
Standalone runs are bench/standalone.py's, cached per (recipe, arch, seed) and shared with
bench/search_evidence.py (the same `--sample-seed` and `--constraints` draw the same archs).

    python train.py hydra.run.dir=logs/bench/supernet_tiny
    python train.py model.sampling.sandwich=true hydra.run.dir=logs/bench/supernet_sandwich
    python bench/ranking_fidelity.py --figure tiny --seeds 42 1 \
        --supernet "one random subnet per step=logs/bench/supernet_tiny" \
        --supernet "sandwich=logs/bench/supernet_sandwich"
    python bench/ranking_fidelity.py --report

A supernet is `LABEL=PATH` (the label is what the plot and the tables call it) or a bare PATH
(labelled by its run directory). `--few-shot LABEL=DIR DIR ...` scores each arch with the first of
these supernets whose space holds it: sub-supernets of a split of the space (few-shot NAS), e.g.
one per depth of stage 3, each trained with `train.py space.stages.2.depth=[d] init_from=<one-shot>`.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from kendall import bootstrap_se, kendall, kendall_resampled, resample_counts  # noqa: E402
from rows import append_row, read_rows  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402
from standalone import ROOT, Recipe, constraints_of, sample_archs, train_all  # noqa: E402

from s3.constraints import Constraints  # noqa: E402
from s3.data import FashionMNISTDataModule  # noqa: E402
from s3.models import SupernetCheckpoint, load_supernet  # noqa: E402
from s3.search.evaluator import CachedSplit, CandidateEvaluator  # noqa: E402
from s3.space import SearchSpace  # noqa: E402

ROWS = ROOT / "bench" / "results" / "ranking_fidelity.csv"
COLUMNS = ["figure", "recipe", "arch", "params", "source", "seed", "test_top1"]
STANDALONE = "standalone"  # the `source` of a standalone run; any other source is a supernet's label


def max_train(value: str) -> str:
    if value != "all" and not (value.isdigit() and int(value) > 0):
        raise argparse.ArgumentTypeError(f"--max-train must be a positive number of images or 'all', got {value!r}")
    return value


def checkpoint(path: str) -> Path:
    """A run directory (its checkpoints/last.ckpt) or a checkpoint file."""
    p = Path(path)
    return p / "checkpoints" / "last.ckpt" if p.is_dir() else p


def labelled(spec: str) -> tuple[str, str]:
    """`LABEL=PATH` -> (LABEL, PATH); a bare PATH (one that exists, even with a `=` in it, as a
    sweep's `seed=1` directory has) is labelled by its run directory's name."""
    label, sep, path = spec.partition("=")
    if not sep or Path(spec).exists():
        p = Path(spec)
        return (p.parent.parent.name if p.parent.name == "checkpoints" else p.name), spec
    if not label:
        raise argparse.ArgumentTypeError(f"--supernet {spec!r}: expected LABEL=PATH or PATH")
    return label, path


# -- the figure from its rows -------------------------------------------------------------------------
def figure_of(rows: list[dict], figure: str) -> dict:
    """One figure's archs (in row order), params, standalone top-1 per seed and each supernet's
    inherited top-1, from the rows alone."""
    archs, params, truth, inherited = [], {}, defaultdict(dict), defaultdict(dict)
    recipe = ""
    for r in rows:
        if r["figure"] != figure:
            continue
        if r["arch"] not in params:
            archs.append(r["arch"])
            params[r["arch"]] = int(r["params"])
        if r["source"] == STANDALONE:
            truth[r["arch"]][int(r["seed"])] = float(r["test_top1"])
            recipe = r["recipe"]
        else:
            inherited[r["source"]][r["arch"]] = float(r["test_top1"])
    seeds = sorted({s for t in truth.values() for s in t})
    archs = [a for a in archs if set(truth[a]) == set(seeds)]  # every seed trained: comparable means
    return {"archs": archs, "params": [params[a] for a in archs], "recipe": recipe, "seeds": seeds,
            "truth": [[truth[a][s] for s in seeds] for a in archs],
            "supernets": {name: [scores[a] for a in archs] for name, scores in inherited.items()
                          if all(a in scores for a in archs)}}


def taus(fig: dict, resamples: int = 2000) -> dict:
    """Kendall taus against the mean standalone top-1, each with its bootstrap SE over the archs, and
    each supernet's paired bootstrap gain over the params count (the same resampled archs for both):
    with 30 archs a tau is uncertain by about 0.1, so a ranking claim needs the gain's SE beside it."""
    mean_truth = np.array([statistics.mean(t) for t in fig["truth"]])
    counts = resample_counts(len(mean_truth), resamples)
    boot = {name: kendall_resampled(x, mean_truth, counts)
            for name, x in {"params": fig["params"], **fig["supernets"]}.items()}
    params_tau = boot["params"][0]
    return {"seed_vs_seed": [kendall([t[a] for t in fig["truth"]], [t[b] for t in fig["truth"]])
                             for a, b in itertools.combinations(range(len(fig["seeds"])), 2)],
            "params": (params_tau, bootstrap_se(boot["params"])),
            "supernets": {name: {"tau": boot[name][0], "p": kendalltau(fig["supernets"][name], mean_truth)[1],
                                 "se": bootstrap_se(boot[name]), "gain": boot[name][0] - params_tau,
                                 "gain_se": bootstrap_se(boot[name] - boot["params"]),
                                 "params_tau": kendall(fig["params"], fig["supernets"][name])}
                          for name in fig["supernets"]}}


def recipe_words(recipe: str) -> str:
    epochs, images = recipe.split("_", 1)
    images = "59,000" if images.startswith("all") else f"{int(images.split('_')[0]):,}"
    return f"{epochs.removesuffix('ep')} ep x {images} images"


def plot(fig: dict, t: dict, path: Path) -> None:
    """The params-only baseline, then one panel per supernet; every panel has the standalone top-1
    (mean of the seeds, the bar spans the seeds) on its y axis and its own tau in its title."""
    truth = fig["truth"]
    mean_truth = [statistics.mean(x) for x in truth]
    spread = [[m - min(x) for m, x in zip(mean_truth, truth)], [max(x) - m for m, x in zip(mean_truth, truth)]]
    panels = [("params count alone (baseline)", [p / 1e6 for p in fig["params"]], *t["params"], None,
               "params (M)")]
    panels += [(name, inh, t["supernets"][name]["tau"], t["supernets"][name]["se"], t["supernets"][name]["p"],
                "top-1, inherited supernet weights (%)") for name, inh in fig["supernets"].items()]
    cols = min(len(panels), 3)
    nrows = -(-len(panels) // cols)
    figure, axes = plt.subplots(nrows, cols, figsize=(4.0 * cols, 3.9 * nrows), squeeze=False, sharey=True,
                                layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    seeds = f"mean of {len(fig['seeds'])} seeds" if len(fig["seeds"]) > 1 else f"seed {fig['seeds'][0]}"
    ylabel = f"standalone top-1 (%)\n{recipe_words(fig['recipe'])}, {seeds}"
    for ax, (name, x, tau, se, p, xlabel) in zip(axes.flat, panels):
        ax.errorbar(x, mean_truth, yerr=spread if len(fig["seeds"]) > 1 else None, fmt="o", ms=4,
                    color="tab:gray" if p is None else "tab:blue", ecolor="0.75", elinewidth=1)
        ax.set_xlabel(xlabel, fontsize=9)
        stat = f"Kendall tau {tau:.2f} +- {se:.2f}" + ("" if p is None else f" (p = {p:.2g})")
        ax.set_title(textwrap.fill(name, 34) + "\n" + stat, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(ylabel, fontsize=9)
    ceiling = (f"; seed vs seed (agreement): tau {statistics.mean(t['seed_vs_seed']):.2f}"
               if t["seed_vs_seed"] else "")
    figure.suptitle(f"Ranking fidelity: {len(fig['archs'])} archs{ceiling}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def ground_truth_agreement(rows: list[dict], fig: dict, figure: str) -> list[tuple[str, float, int]]:
    """Kendall tau between this figure's standalone ground truth and that of every other figure
    trained with another recipe on at least 3 of the same archs: how much of the order a longer (or
    shorter) standalone budget keeps."""
    mine = dict(zip(fig["archs"], (statistics.mean(t) for t in fig["truth"])))
    out, seen = [], set()
    for other in dict.fromkeys(r["figure"] for r in rows):
        theirs = figure_of(rows, other)
        if other == figure or theirs["recipe"] == fig["recipe"]:
            continue
        truth = dict(zip(theirs["archs"], (statistics.mean(t) for t in theirs["truth"])))
        shared = [a for a in fig["archs"] if a in truth]
        if len(shared) >= 3 and (theirs["recipe"], tuple(shared)) not in seen:  # one figure per same comparison
            seen.add((theirs["recipe"], tuple(shared)))
            out.append((other, kendall([mine[a] for a in shared], [truth[a] for a in shared]), len(shared)))
    return out


def report(rows: list[dict], figures: list[str], plots: Path) -> str:
    """Each figure's taus as a markdown table (+- a bootstrap SE over the archs; "minus params" paired
    on the same resamples); draws each figure's plot into `plots`."""
    lines: list[str] = []
    for figure in figures:
        fig = figure_of(rows, figure)
        if len(fig["archs"]) < 2:
            lines.append(f"{figure}: fewer than two archs with every seed trained; nothing to rank")
            continue
        t = taus(fig)
        lines += ["", f"**{figure}**: {len(fig['archs'])} archs, standalone {recipe_words(fig['recipe'])}, "
                      f"seeds {', '.join(map(str, fig['seeds']))}", "",
                  "| ranking | Kendall tau | p | minus params | its tau with params |", "|---|---|---|---|---|"]
        for (a, b), tau in zip(itertools.combinations(fig["seeds"], 2), t["seed_vs_seed"]):
            lines.append(f"| standalone seed {a} vs seed {b} (seed-to-seed agreement) | {tau:.2f} | | | |")
        lines.append(f"| params count alone | {t['params'][0]:.2f} ± {t['params'][1]:.2f} | | | |")
        for name, r in t["supernets"].items():
            lines.append(f"| {name} | {r['tau']:.2f} ± {r['se']:.2f} | {r['p']:.2g} | "
                         f"{r['gain']:+.2f} ± {r['gain_se']:.2f} | {r['params_tau']:.2f} |")
        for other, tau, n in ground_truth_agreement(rows, fig, figure):
            lines.append(f"\nIts ground truth against {other}'s ({n} shared archs): Kendall tau {tau:.2f}.")
        plot(fig, t, plots / f"ranking_fidelity_{figure}.png")
    return "\n".join(lines).strip()


# -- measuring ----------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--figure", help="the figure these measurements belong to (its rows and plot's name)")
    p.add_argument("--supernet", action="append", default=[], type=labelled, metavar="[LABEL=]PATH",
                   help="run directory or checkpoint; repeat to compare")
    p.add_argument("--few-shot", action="append", nargs="+", default=[], metavar="[LABEL=]DIR",
                   help="sub-supernets that split the space; each arch is scored by the one holding it")
    p.add_argument("--space", default=str(ROOT / "conf/space/tiny.yaml"), help="the space the archs are drawn from")
    p.add_argument("--constraints", default=None, help="a conf/constraints/ file: draw archs within its budget only")
    p.add_argument("--standalone-root", default="logs/bench/standalone", help="the cache of standalone runs")
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-train", type=max_train, default="20000", help="images per epoch, or 'all' (59,000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--sample-seed", type=int, nargs="+", default=[0], help="several: their archs are pooled")
    p.add_argument("--jobs", type=int, default=2, help="standalone runs trained side by side, sharing the cores")
    p.add_argument("--report", action="store_true", help="only recompute the taus and plots from the rows")
    p.add_argument("--rows", type=Path, default=ROWS)
    p.add_argument("--plots", type=Path, default=ROOT / "docs" / "bench")
    args = p.parse_args()
    rows = read_rows(args.rows)
    if args.report:
        figures = [args.figure] if args.figure else list(dict.fromkeys(r["figure"] for r in rows))
        return print(report(rows, figures, args.plots))
    if not args.figure:
        p.error("--figure is required to measure (it names the rows and the plot)")
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    groups = [(label, [checkpoint(path)]) for label, path in args.supernet]
    for group in args.few_shot:
        label, first = labelled(group[0])
        groups.append((label if first != group[0] else f"few-shot ({len(group)})",
                       [checkpoint(first), *map(checkpoint, group[1:])]))
    if not groups:
        p.error("give at least one --supernet or --few-shot")
    for label, paths in groups:
        for path in paths:
            if not path.is_file():
                p.error(f"--supernet {label}={path}: no such checkpoint")

    space = SearchSpace.from_yaml(args.space)
    constraints = Constraints(space, num_classes=10)
    try:
        budget = constraints_of(args.constraints, space)
        archs = [a for sample in args.sample_seed for a in sample_archs(space, budget, args.archs, f"ranking:{sample}")]
    except (OSError, ValueError) as e:
        sys.exit(f"--constraints {args.constraints}: {e}")
    recipe = Recipe(args.epochs, args.max_train)
    held = {(r["figure"], r["arch"], r["source"], r["seed"]) for r in rows}
    base = {"figure": args.figure, "recipe": recipe.name}

    def record(arch, run: dict) -> None:
        append_row(args.rows, COLUMNS, {**base, "arch": str(arch), "params": constraints.cost(arch)["params"],
                                        "source": STANDALONE, "seed": run["seed"], "test_top1": run["top1"]})

    # a standalone run another figure holds (same recipe, arch and seed) is copied, not trained again
    trained = {(r["recipe"], r["arch"], r["seed"]): r["test_top1"] for r in rows if r["source"] == STANDALONE}
    jobs = []
    for a, seed in ((a, s) for a in archs for s in args.seeds):
        if (args.figure, str(a), STANDALONE, str(seed)) in held:
            continue
        if (recipe.name, str(a), str(seed)) in trained:
            record(a, {"seed": seed, "top1": trained[recipe.name, str(a), str(seed)]})
        else:
            jobs.append((a, seed))
    train_all(jobs, recipe, args.standalone_root, parallel=args.jobs,
              finished=lambda arch, run: record(arch, {**run, "top1": f"{run['top1']:.2f}"}))

    test = None  # the test split, decoded only if some supernet has archs left to score
    for label, paths in groups:
        todo = [a for a in archs if (args.figure, str(a), label, "") not in held]
        if not todo:
            continue
        if test is None:
            dm = FashionMNISTDataModule(eval_batch_size=500)
            dm.setup()
            test = CachedSplit.from_loader(dm.val_dataloader())
        try:
            members = [SupernetCheckpoint.read(path).check("--supernet", space, 10).build() if len(paths) == 1 else
                       load_supernet(path) for path in paths]
        except ValueError as e:
            sys.exit(f"--supernet {label}: {e}")
        evaluators = [CandidateEvaluator(m, test, Constraints(m.space, num_classes=10), batch_size=128) for m in members]
        for a in todo:
            holder = next((e for e in evaluators if e.supernet.space.contains(a)), None)
            if holder is None:
                sys.exit(f"--few-shot {label}: no sub-supernet's space holds {a}")
            append_row(args.rows, COLUMNS, {**base, "arch": str(a), "params": constraints.cost(a)["params"],
                                            "source": label, "test_top1": f"{holder.measure(a)['top1']:.2f}"})
        print(f"{label}: {len(todo)} archs scored", flush=True)
    print(report(read_rows(args.rows), [args.figure], args.plots))


if __name__ == "__main__":
    main()
