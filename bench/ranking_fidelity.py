"""Ranking fidelity of supernets: Kendall tau between the top-1 of sampled archs with inherited
supernet weights and their top-1 when trained standalone with one and the same budget (both on
the Fashion-MNIST test set), with a scatter plot per supernet.

Each arch is trained standalone once per seed (`--seeds`); its ground truth is the mean over
seeds, and with two seeds or more the tau between the seeds is printed too: how much of its
own order a ground truth that noisy keeps, a rough ceiling for any supernet. Standalone runs go
through train.py into `--standalone-root`, are skipped when finished and continued from their
last checkpoint when interrupted, so the benchmark resumes and several supernets share them.

    python train.py hydra.run.dir=logs/bench/supernet_tiny                                  # default
    python train.py model.sampling.sandwich=true hydra.run.dir=logs/bench/supernet_sandwich # sandwich
    python bench/ranking_fidelity.py --supernet logs/bench/supernet_tiny \
        --supernet logs/bench/supernet_sandwich [--archs 10] [--epochs 3] [--max-train 20000|all] [--seeds 42 1]
"""

import argparse
import concurrent.futures
import csv
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402

from s3.data import FashionMNISTDataModule  # noqa: E402
from s3.search.constraints import Constraints  # noqa: E402
from s3.search.context import load_supernet  # noqa: E402
from s3.search.evaluator import CachedSplit, CandidateEvaluator  # noqa: E402
from s3.space import SearchSpace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def standalone_top1(arch_yaml: Path, out: Path, seed: int, args) -> float:
    if not (out / "done").is_file():
        images = "null" if args.max_train == "all" else args.max_train
        cmd = [sys.executable, str(ROOT / "train.py"), "experiment=retrain_tiny", f"arch={arch_yaml}", f"seed={seed}",
               f"trainer.max_epochs={args.epochs}", f"data.max_train={images}", f"hydra.run.dir={out}"]
        if (out / "checkpoints" / "last.ckpt").is_file():  # an interrupted run continues
            cmd.append(f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}")
        # Small models use two cores better as two one-thread runs than as one two-thread run.
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // args.jobs))}
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, env=env)
        (out / "done").touch()
    rows = [r for r in csv.DictReader(open(out / "csv" / "metrics.csv")) if r.get("val/top1")]
    return 100 * float(rows[-1]["val/top1"])


def max_train(value: str) -> str:
    if value != "all" and not (value.isdigit() and int(value) > 0):
        raise argparse.ArgumentTypeError(f"--max-train must be a positive number of images or 'all', got {value!r}")
    return value


def checkpoint(path: str) -> Path:
    """A run directory (its checkpoints/last.ckpt) or a checkpoint file."""
    p = Path(path)
    return p / "checkpoints" / "last.ckpt" if p.is_dir() else p


def scatter(ax, inherited, truth, tau, title, ylabel):
    ax.scatter(inherited, truth)
    ax.set_xlabel("top-1, inherited supernet weights (%)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}: Kendall tau = {tau:.2f}")
    ax.grid(alpha=0.3)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--supernet", action="append", help="run directory or checkpoint; repeat to compare")
    p.add_argument("--space", default=str(ROOT / "conf/space/tiny.yaml"), help="the space the archs are drawn from")
    p.add_argument("--standalone-root", default="logs/bench",
                   help="standalone runs go to <root>/standalone_<epochs>ep_<max-train>_sample<seed>")
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
    supernets = [checkpoint(s) for s in (args.supernet or ["logs/bench/supernet_tiny"])]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    space = SearchSpace.from_yaml(args.space)
    constraints = Constraints(space, num_classes=10)
    runs = []  # (sample, index, arch, arch yaml, its run directory per seed)
    for sample in args.sample_seed:
        standalone_dir = Path(args.standalone_root) / f"standalone_{args.epochs}ep_{args.max_train}_sample{sample}"
        rng = random.Random(f"ranking:{sample}")
        for i, arch in enumerate(dict.fromkeys(space.sample(rng) for _ in range(args.archs))):
            runs.append((sample, i, arch, arch.to_yaml(standalone_dir / f"arch{i}.yaml"),
                         [standalone_dir / f"arch{i}_seed{s}" for s in args.seeds]))
    archs, truth = [], []  # truth: top-1 per standalone seed, per arch
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [[pool.submit(standalone_top1, yaml, run_dir, s, args) for run_dir, s in zip(run_dirs, args.seeds)]
                   for *_, yaml, run_dirs in runs]
        for (sample, i, arch, _, _), top1 in zip(runs, futures):
            archs.append(arch)
            truth.append([f.result() for f in top1])
            print(f"sample {sample} arch {i}: standalone {' '.join(f'{t:.2f}' for t in truth[-1])}  {arch}", flush=True)
    mean_truth = [statistics.mean(t) for t in truth]
    params = [constraints.cost(a)["params"] for a in archs]

    dm = FashionMNISTDataModule(eval_batch_size=500)
    dm.setup()
    val = CachedSplit.from_loader(dm.val_dataloader())
    results = {"archs": [{"arch": str(a), "params": params[i], "standalone_top1": truth[i]} for i, a in enumerate(archs)],
               "budget": {"epochs": args.epochs, "max_train": args.max_train, "seeds": args.seeds,
                          "sample_seeds": args.sample_seed},
               "seed_vs_seed_tau": [kendalltau([t[a] for t in truth], [t[b] for t in truth])[0]
                                    for a, b in itertools.combinations(range(len(args.seeds)), 2)],
               "params_tau": kendalltau(params, mean_truth)[0],
               "supernets": {}}
    fig, axes = plt.subplots(1, len(supernets), figsize=(5 * len(supernets), 4), squeeze=False)
    ylabel = f"top-1, standalone {args.epochs} ep x {args.max_train}, mean of {len(args.seeds)} seed(s) (%)"
    for ax, path in zip(axes[0], supernets):
        try:
            supernet = load_supernet(path, space, num_classes=10)
        except ValueError as e:
            sys.exit(f"--supernet: {e}")
        evaluator = CandidateEvaluator(supernet, val, Constraints(supernet.space, num_classes=10), batch_size=500)
        inherited = [evaluator.measure(a)["top1"] for a in archs]
        tau, pvalue = kendalltau(inherited, mean_truth)
        name = path.parent.parent.name if path.parent.name == "checkpoints" else path.stem
        results["supernets"][name] = {"checkpoint": str(path), "kendall_tau": tau, "p_value": pvalue,
                                      "params_tau": kendalltau(params, inherited)[0], "inherited_top1": inherited}
        scatter(ax, inherited, mean_truth, tau, name, ylabel)
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
