"""Ranking fidelity of the supernet: Kendall tau between the top-1 of sampled archs with inherited
supernet weights and their top-1 when trained standalone with one and the same budget (both on
the Fashion-MNIST test set), plus the scatter plot. Standalone runs go through train.py and are
skipped when already finished, so the benchmark resumes.

    python train.py hydra.run.dir=logs/bench/supernet_tiny         # the default tiny supernet
    python bench/ranking_fidelity.py [--archs 10] [--epochs 1]
"""

import argparse
import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402

from s3.data import FashionMNISTDataModule  # noqa: E402
from s3.lit.supernet import SupernetModule  # noqa: E402
from s3.search.constraints import Constraints  # noqa: E402
from s3.search.evaluator import CachedSplit, CandidateEvaluator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def standalone_top1(arch_yaml: Path, out: Path, args) -> float:
    metrics = out / "csv" / "metrics.csv"
    if not (out / "done").is_file():
        cmd = [sys.executable, str(ROOT / "train.py"), "experiment=retrain_tiny", f"arch={arch_yaml}",
               f"trainer.max_epochs={args.epochs}", f"data.max_train={args.max_train}", f"hydra.run.dir={out}"]
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
        (out / "done").touch()
    rows = [r for r in csv.DictReader(open(metrics)) if r.get("val/top1")]
    return 100 * float(rows[-1]["val/top1"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--supernet", default="logs/bench/supernet_tiny/checkpoints/last.ckpt")
    p.add_argument("--out", default="logs/bench/ranking_fidelity")
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-train", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    supernet = SupernetModule.load_supernet(args.supernet)
    space = supernet.space
    dm = FashionMNISTDataModule(eval_batch_size=500)
    dm.setup()
    val = CachedSplit.from_loader(dm.val_dataloader())
    evaluator = CandidateEvaluator(supernet, val, Constraints(space, num_classes=10), batch_size=500)
    rng = random.Random(f"ranking:{args.seed}")
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(args.archs)))
    rows = []
    for i, arch in enumerate(archs):
        arch_yaml = arch.to_yaml(out / f"arch{i}.yaml")
        inherited = evaluator.measure(arch)["top1"]
        trained = standalone_top1(arch_yaml, out / f"standalone{i}", args)
        rows.append({"arch": str(arch), "params": evaluator.constraints.cost(arch)["params"],
                     "inherited_top1": inherited, "standalone_top1": trained})
        print(f"arch {i}: inherited {inherited:.2f}  standalone {trained:.2f}  {arch}", flush=True)
    tau, pvalue = kendalltau([r["inherited_top1"] for r in rows], [r["standalone_top1"] for r in rows])
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter([r["inherited_top1"] for r in rows], [r["standalone_top1"] for r in rows])
    ax.set_xlabel("top-1, inherited supernet weights (%)")
    ax.set_ylabel(f"top-1, trained standalone {args.epochs} epoch(s) (%)")
    ax.set_title(f"Kendall tau = {tau:.2f} over {len(rows)} archs")
    ax.grid(alpha=0.3)
    fig.savefig(out / "ranking_fidelity.png", dpi=120, bbox_inches="tight")
    (out / "ranking_fidelity.json").write_text(json.dumps({"kendall_tau": tau, "p_value": pvalue, "archs": rows},
                                                          indent=2))
    print(f"Kendall tau {tau:.3f} (p = {pvalue:.3g}) over {len(rows)} archs (target >= 0.5); plot: "
          f"{out / 'ranking_fidelity.png'}")


if __name__ == "__main__":
    main()
