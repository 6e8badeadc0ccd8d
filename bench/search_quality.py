"""Evolution vs random search on the embedded default: best search-split top-1 with the same number
of evaluations, over several seeds, both through search.py on the same trained supernet.

    python train.py hydra.run.dir=logs/bench/supernet_tiny        # the default tiny supernet
    python bench/search_quality.py [--supernet logs/bench/supernet_tiny/checkpoints/last.ckpt]
"""

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def search(kind: str, seed: int, args) -> dict:
    out = Path(args.out) / f"{kind}_seed{seed}"
    if not (out / "result.json").is_file():
        cmd = [sys.executable, str(ROOT / "search.py"), f"search={kind}", f"seed={seed}", f"supernet={args.supernet}",
               f"search.population={args.population}", f"search.generations={args.generations}",
               f"constraints.params.max={args.params_max}", f"hydra.run.dir={out}", "resume=true"]
        if kind == "evolution":  # random keeps its 0 mutations / 0 crossovers
            cmd += [f"search.parents={args.parents}", f"search.mutations={args.mutations}",
                    f"search.crossovers={args.crossovers}"]
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    result = json.loads((out / "result.json").read_text())
    top = [float(r["top1"]) for r in list(csv.DictReader(open(out / "archs.csv")))[:5]]
    return {**result, "top5_mean": sum(top) / len(top)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--supernet", default="logs/bench/supernet_tiny/checkpoints/last.ckpt")
    p.add_argument("--out", default="logs/bench/search_quality")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--parents", type=int, default=4)
    p.add_argument("--mutations", type=int, default=6)
    p.add_argument("--crossovers", type=int, default=6)
    p.add_argument("--params-max", type=float, default=6e5)
    args = p.parse_args()
    print(f"budget {args.population} x {args.generations} evaluations, params <= {args.params_max:g}")
    print("| seed | evolution best top-1 | random best top-1 | evolution mean of top 5 | random mean of top 5 | "
          "evaluations (evo / random) |")
    print("|---|---|---|---|---|---|")
    wins = 0
    for seed in args.seeds:
        evo, rnd = search("evolution", seed, args), search("random", seed, args)
        wins += evo["best_search_top1"] >= rnd["best_search_top1"]
        print(f"| {seed} | {evo['best_search_top1']:.2f} | {rnd['best_search_top1']:.2f} | {evo['top5_mean']:.2f} | "
              f"{rnd['top5_mean']:.2f} | {evo['evaluated']} / {rnd['evaluated']} |")
    print(f"evolution >= random in {wins}/{len(args.seeds)} seeds")


if __name__ == "__main__":
    main()
