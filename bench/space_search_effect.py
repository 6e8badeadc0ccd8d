"""Does searching the space help, on the embedded default? Run after `make demo`, which it reuses.

1. E-T Error of the initial (tiny) and of the searched space, each measured on a supernet trained
   with the same budget (`make demo`'s first space iteration for the initial space; one more
   `search.py search=space search.iterations=1` run with the same settings for the searched one).
2. The architecture `make demo` found vs the best random architecture of the initial space under
   the same params budget (random search, the same number of evaluations, on the initial space's
   supernet), both retrained and evaluated exactly as `make demo` does.

    make demo && python bench/space_search_effect.py
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ["data.max_train=12000", "data.max_val=2000"]


def call(script: str, *args: str, done: Path) -> None:
    if not done.exists():
        subprocess.run([sys.executable, str(ROOT / script), *args], check=True, cwd=ROOT, capture_output=True)
        done.touch()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--demo", default="logs/demo")
    p.add_argument("--out", default="logs/bench/space_search_effect")
    p.add_argument("--budget", default="8e5")
    args = p.parse_args()
    demo, out = Path(args.demo), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    space_conf = f"hydra.searchpath=[file://{(demo / '1_space' / 'conf').resolve()}]"
    demo_space = json.loads((demo / "1_space" / "config.yaml").with_name("search_state.json").read_text())
    initial = demo_space["iterations"][0]["et_error"]
    # 1. the searched space, trained and measured as iteration 0 of the demo was
    call("search.py", "search=space", space_conf, "space=searched", *DATA, f"constraints.params.max={args.budget}",
         "search.iterations=1", "search.samples=100", "search.top_k=10", "search.train_epochs=2",
         f"hydra.run.dir={out / 'searched_space'}", done=out / "searched_space.done")
    searched = json.loads((out / "searched_space" / "search_state.json").read_text())["iterations"][0]["et_error"]
    # 2. best random arch of the initial space at the same budget, retrained and evaluated like the demo's pick
    evolution = json.loads((demo / "3_evolution" / "result.json").read_text())
    call("search.py", "search=random", *DATA, f"supernet={demo / '1_space' / 'iter0' / 'checkpoints' / 'last.ckpt'}",
         f"constraints.params.max={args.budget}", "search.population=20", "search.generations=8",
         f"hydra.run.dir={out / 'random'}", done=out / "random.done")
    arch = out / "random" / "top" / "top1.yaml"
    call("train.py", "experiment=retrain_tiny", f"arch={arch}", "data.max_train=20000", "trainer.max_epochs=3",
         f"hydra.run.dir={out / 'random_retrain'}", done=out / "random_retrain.done")
    call("evaluate.py", f"arch={arch}", f"ckpt_path={out / 'random_retrain' / 'checkpoints' / 'last.ckpt'}",
         f"hydra.run.dir={out / 'random_evaluate'}", done=out / "random_evaluate.done")
    found = json.loads((demo / "5_evaluate" / "evaluation.json").read_text())
    rnd = json.loads((out / "random_evaluate" / "evaluation.json").read_text())
    print("| space | Q (E-T Error, %) | Q_e | Q_t |")
    print("|---|---|---|---|")
    for name, e in (("initial (tiny)", initial), ("searched", searched)):
        print(f"| {name} | {e['q']:.2f} | {e['q_e']:.2f} | {e['q_t']:.2f} |")
    print()
    print(f"| architecture (params <= {args.budget}) | params | test top-1 (retrained) |")
    print("|---|---|---|")
    print(f"| found by make demo (searched space, evolution) | {found['params']:,} | {found['top1']:.2f} |")
    print(f"| best random arch of the initial space ({evolution['evaluated']} evaluations) | {rnd['params']:,} | "
          f"{rnd['top1']:.2f} |")


if __name__ == "__main__":
    main()
