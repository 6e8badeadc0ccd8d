"""Ranking fidelity of supernets: Kendall tau between the top-1 of sampled archs with inherited
supernet weights and their top-1 when trained standalone with one and the same budget (both on
the Fashion-MNIST test set), with a scatter plot per supernet.

Each arch is trained standalone once per seed (`--seeds`); its ground truth is the mean over
seeds, and with two seeds or more the tau between the seeds is printed too: how much of its
own order a ground truth that noisy keeps, a rough ceiling for any supernet. The tau of the
params count with the ground truth says how much of the order size alone explains. Standalone
runs are bench/standalone.py's, cached per (recipe, arch, seed) and shared with
bench/search_evidence.py (the same `--sample-seed` and `--constraints` draw the same archs), and
an interrupted benchmark resumes.

    python train.py hydra.run.dir=logs/bench/supernet_tiny                                  # default
    python train.py model.sampling.sandwich=true hydra.run.dir=logs/bench/supernet_sandwich # sandwich
    python bench/ranking_fidelity.py --supernet logs/bench/supernet_tiny \
        --supernet logs/bench/supernet_sandwich [--archs 10] [--epochs 3] [--max-train 20000|all] [--seeds 42 1]
    python bench/ranking_fidelity.py --space conf/space/wide.yaml --constraints band_1m --archs 30 \
        --supernet logs/bench/search_evidence/initial_supernet      # the embedded benchmark's space

`--few-shot DIR DIR ...` scores each arch with the first of these supernets whose space holds it:
sub-supernets of a split of the space (few-shot NAS), e.g. one per depth of stage 3, each trained
with `train.py space.stages.2.depth=[d] init_from=<one-shot supernet>`.
"""

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402
from standalone import ROOT, Recipe, constraints_of, sample_archs, train_all  # noqa: E402

from s3.data import FashionMNISTDataModule  # noqa: E402
from s3.models import SupernetCheckpoint, load_supernet  # noqa: E402
from s3.search.constraints import Constraints  # noqa: E402
from s3.search.evaluator import CachedSplit, CandidateEvaluator  # noqa: E402
from s3.space import SearchSpace  # noqa: E402


def max_train(value: str) -> str:
    if value != "all" and not (value.isdigit() and int(value) > 0):
        raise argparse.ArgumentTypeError(f"--max-train must be a positive number of images or 'all', got {value!r}")
    return value


def checkpoint(path: str) -> Path:
    """A run directory (its checkpoints/last.ckpt) or a checkpoint file."""
    p = Path(path)
    return p / "checkpoints" / "last.ckpt" if p.is_dir() else p


def measured(ckpt: Path, evaluator: CandidateEvaluator, arch) -> float:
    """The test top-1 of `arch` with the weights of `ckpt`, cached beside the checkpoint (keyed by
    its size and time): re-running the benchmark with another supernet beside it scores no arch twice."""
    stat = ckpt.stat()
    cache = ckpt.with_name(f"{ckpt.stem}.inherited_test_top1.json")
    key = f"{stat.st_size}:{stat.st_mtime_ns}"
    scores = json.loads(cache.read_text()) if cache.is_file() else {}
    scores = scores if scores.get("key") == key else {"key": key, "top1": {}}
    if str(arch) not in scores["top1"]:
        scores["top1"][str(arch)] = evaluator.measure(arch)["top1"]
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(scores, indent=1))
        tmp.replace(cache)
    return scores["top1"][str(arch)]


def run_name(path: Path) -> str:
    return path.parent.parent.name if path.parent.name == "checkpoints" else path.stem


def scatter(ax, inherited, truth, tau, params_tau, title, ylabel):
    """One supernet's panel: the y label only on the first (the panels share it), the title the
    supernet's setting (its run directory's name, underscores as spaces) and both taus: the
    supernet's and the params-only baseline's (params ranked against the same ground truth)."""
    ax.scatter(inherited, truth)
    ax.set_xlabel("top-1, inherited supernet weights (%)")
    if ax.get_subplotspec().is_first_col():
        ax.set_ylabel(ylabel)
    ax.set_title(f"{title.replace('_', ' ')}\nKendall tau {tau:.2f} (params alone: {params_tau:.2f})", fontsize=10)
    ax.grid(alpha=0.3)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--supernet", action="append", help="run directory or checkpoint; repeat to compare")
    p.add_argument("--few-shot", action="append", nargs="+", default=[], metavar="DIR",
                   help="sub-supernets that split the space; each arch is scored by the one holding it")
    p.add_argument("--space", default=str(ROOT / "conf/space/tiny.yaml"), help="the space the archs are drawn from")
    p.add_argument("--constraints", default=None, help="a conf/constraints/ file: draw archs within its budget only")
    p.add_argument("--standalone-root", default="logs/bench/standalone", help="the cache of standalone runs")
    p.add_argument("--out", default="logs/bench/ranking_fidelity")
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-train", type=max_train, default="20000", help="images per epoch, or 'all' (59,000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--sample-seed", type=int, nargs="+", default=[0], help="several: their archs are pooled")
    p.add_argument("--jobs", type=int, default=2, help="standalone runs trained side by side, sharing the cores")
    args = p.parse_args()
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    groups = [[checkpoint(s)] for s in (args.supernet or ([] if args.few_shot else ["logs/bench/supernet_tiny"]))]
    groups += [[checkpoint(s) for s in group] for group in args.few_shot]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    space = SearchSpace.from_yaml(args.space)
    constraints = Constraints(space, num_classes=10)
    try:
        budget = constraints_of(args.constraints, space)
        archs = [a for sample in args.sample_seed for a in sample_archs(space, budget, args.archs, f"ranking:{sample}")]
    except (OSError, ValueError) as e:
        sys.exit(f"--constraints {args.constraints}: {e}")
    runs = train_all([(a, s) for a in archs for s in args.seeds], Recipe(args.epochs, args.max_train),
                     args.standalone_root, parallel=args.jobs)
    truth = [[r["top1"] for r in runs[i * len(args.seeds):(i + 1) * len(args.seeds)]] for i in range(len(archs))]
    for i, (arch, t) in enumerate(zip(archs, truth)):
        print(f"arch {i}: standalone {' '.join(f'{x:.2f}' for x in t)}  {arch}", flush=True)
    mean_truth = [statistics.mean(t) for t in truth]
    params = [constraints.cost(a)["params"] for a in archs]

    dm = FashionMNISTDataModule(eval_batch_size=500)
    dm.setup()
    val = CachedSplit.from_loader(dm.val_dataloader())
    results = {"archs": [{"arch": str(a), "params": params[i], "standalone_top1": truth[i]} for i, a in enumerate(archs)],
               "budget": {"epochs": args.epochs, "max_train": args.max_train, "seeds": args.seeds,
                          "sample_seeds": args.sample_seed, "constraints": str(budget)},
               "seed_vs_seed_tau": [kendalltau([t[a] for t in truth], [t[b] for t in truth])[0]
                                    for a, b in itertools.combinations(range(len(args.seeds)), 2)],
               "params_tau": kendalltau(params, mean_truth)[0],
               "supernets": {}}
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 4.2), squeeze=False, sharey=True)
    ylabel = f"standalone top-1 (%)\n{args.epochs} ep x {args.max_train} images, mean of {len(args.seeds)} seed(s)"
    for ax, group in zip(axes[0], groups):
        try:
            members = [SupernetCheckpoint.read(path).check("--supernet", space, 10).build() if len(group) == 1 else
                       load_supernet(path) for path in group]
        except ValueError as e:
            sys.exit(f"--supernet: {e}")
        evaluators = [CandidateEvaluator(m, val, Constraints(m.space, num_classes=10), batch_size=500) for m in members]
        inherited = []
        for a in archs:
            holder = next((i for i, e in enumerate(evaluators) if e.supernet.space.contains(a)), None)
            if holder is None:
                sys.exit(f"--few-shot {' '.join(map(str, group))}: no sub-supernet's space holds {a}")
            inherited.append(measured(group[holder], evaluators[holder], a))
        tau, pvalue = kendalltau(inherited, mean_truth)
        name = "few-shot: " + ", ".join(map(run_name, group)) if len(group) > 1 else run_name(group[0])
        results["supernets"][name] = {"checkpoint": [str(p) for p in group], "kendall_tau": tau, "p_value": pvalue,
                                      "params_tau": kendalltau(params, inherited)[0], "inherited_top1": inherited}
        scatter(ax, inherited, mean_truth, tau, results["params_tau"],
                name if len(group) == 1 else f"few-shot ({len(group)})", ylabel)
    fig.tight_layout()
    fig.savefig(out / "ranking_fidelity.png", dpi=120, bbox_inches="tight")
    (out / "ranking_fidelity.json").write_text(json.dumps(results, indent=2))

    print(f"\nKendall tau over {len(archs)} archs (samples {args.sample_seed}), standalone {args.epochs} epochs x {args.max_train} images, "
          f"seeds {args.seeds} (target >= 0.5)")
    pairs = itertools.combinations(range(len(args.seeds)), 2)
    for (a, b), tau in zip(pairs, results["seed_vs_seed_tau"]):
        print(f"  standalone seed {args.seeds[a]} vs seed {args.seeds[b]} (noise ceiling): {tau:.3f}")
    for name, r in results["supernets"].items():
        print(f"  {name}: {r['kendall_tau']:.3f} (p = {r['p_value']:.3g})")
    print(f"Kendall tau with params: standalone {results['params_tau']:.3f}, "
          + ", ".join(f"{name} {r['params_tau']:.3f}" for name, r in results["supernets"].items()))
    for a, b in itertools.combinations(results["supernets"], 2):
        inh_a, inh_b = results["supernets"][a]["inherited_top1"], results["supernets"][b]["inherited_top1"]
        print(f"Kendall tau between {a} and {b}: {kendalltau(inh_a, inh_b)[0]:.3f}")
    print(f"plot: {out / 'ranking_fidelity.png'}")


if __name__ == "__main__":
    main()
