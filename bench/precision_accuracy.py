"""Does bf16 autocast cost accuracy on the embedded default? Same seeds, fp32 vs bf16-mixed:
the default supernet training (`python train.py`: the largest subnet's validation top-1) and a
retraining (`experiment=retrain_tiny` of an arch: test top-1), each with two seeds so that the
fp32-bf16 difference can be read against the seed-to-seed one. Every run is cached under
`--out` (a finished run is skipped, an interrupted one resumes from its last.ckpt), and its wall
time is recorded, so the same table also gives the end-to-end speed of both precisions. The
figures are rows of bench/results/speed.csv (bench/speed_rows.py).

    python bench/precision_accuracy.py [--arch logs/demo/3_evolution/top/top1.yaml] [--seeds 42 1] [--force]
"""

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from speed_rows import Figures

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("32-true", "bf16-mixed")
DEFAULT_ARCH = {"DEPTHS": [2, 1, 2, 1], "EMBED_DIM": [48, 96, 96, 256], "MLP_RATIO": [[1.0, 2.0], [2.0], [2.0, 1.0], [2.0]],
                "NUM_HEADS": [[2, 3], [1], [1, 1], [6]], "WINDOW_SIZE": [[4, 4], [4], [2, 2], [2]]}


def run(out: Path, script: str, *overrides: str) -> dict:
    """One cached run: the final metrics and the wall time of the call that finished it."""
    result = out / "result.json"
    if result.is_file():
        return json.loads(result.read_text())
    last = out / "checkpoints" / "last.ckpt"
    resume = [f"ckpt_path={last}"] if last.is_file() else []
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / script), *overrides, f"hydra.run.dir={out}", *resume],
                   check=True, cwd=ROOT, capture_output=True)
    metrics = {}
    with open(out / "csv" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            metrics.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    record = {"seconds": time.perf_counter() - t0, "resumed": bool(resume), **metrics}
    result.write_text(json.dumps(record))
    return record


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="logs/bench/precision_accuracy")
    p.add_argument("--arch", default=None, help="arch YAML to retrain (default: the arch make demo found)")
    p.add_argument("--seeds", nargs="+", type=int, default=[42, 1])
    args, figures = Figures.parse(p, "precision_accuracy")
    if figures is None:
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arch = Path(args.arch) if args.arch else out / "arch.yaml"
    if not args.arch:
        arch.write_text(yaml.safe_dump(DEFAULT_ARCH))
    rows = []
    for task, script, overrides, metric in (
        ("supernet training (python train.py)", "train.py", [], "val/largest/top1"),
        ("retraining (experiment=retrain_tiny)", "train.py", ["experiment=retrain_tiny", f"arch={arch.resolve()}", "data.max_train=20000"],
         "val/top1"),
    ):
        for precision in PRECISIONS:
            for seed in args.seeds:
                name = f"{script.split('.')[0]}_{'retrain' if overrides else 'supernet'}_{precision}_seed{seed}"
                r = run(out / name, script, *overrides, f"trainer.precision={precision}", f"seed={seed}")
                rows.append((task, precision, seed, r[metric], r["seconds"], r["resumed"]))
                print(f"{task} {precision} seed {seed}: top-1 {r[metric]:.2f}, {r['seconds']:.0f} s", flush=True)
    for task in dict.fromkeys(r[0] for r in rows):
        r = {(p, s): (t, sec, resumed) for tk, p, s, t, sec, resumed in rows if tk == task}
        for precision in PRECISIONS:
            for seed in args.seeds:
                top1, seconds, resumed = r[(precision, seed)]
                figures.add(f"{task}, {precision}, seed {seed}: top-1", top1, "%", digits=4)
                figures.add(f"{task}, {precision}, seed {seed}: wall time" + (" (resumed)" if resumed else ""),
                            seconds / 60, "min", digits=2)
        diff = sum(r[("32-true", s)][0] - r[("bf16-mixed", s)][0] for s in args.seeds) / len(args.seeds)
        speed = sum(r[("32-true", s)][1] for s in args.seeds) / sum(r[("bf16-mixed", s)][1] for s in args.seeds)
        figures.add(f"{task}: fp32 - bf16 top-1, same seed, mean", diff, "points", digits=2)
        if len(args.seeds) > 1:  # the spread the difference reads against
            noise = [abs(r[(p, args.seeds[0])][0] - r[(p, s)][0]) for p in PRECISIONS for s in args.seeds[1:]]
            figures.add(f"{task}: seed-to-seed top-1 difference, same precision, mean", sum(noise) / len(noise),
                        "points", digits=2)
        figures.add(f"{task}: bf16 speed-up of the wall time", speed, "x")


if __name__ == "__main__":
    main()
