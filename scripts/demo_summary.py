"""The closing summary of `make demo`: where everything is, the space of every iteration with its
E-T Error, the found architecture, its cost and its test accuracy."""

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from s3.console import print_table
from s3.space import SearchSpace


def main(demo: Path) -> None:
    console = Console()
    space = json.loads((demo / "1_space" / "search_state.json").read_text())["iterations"]
    t = Table(title="1. Space search (E-T Error on the search split, %)")
    confirm = any("confirm" in it for it in space)
    for col in ("iteration", "Q", "Q_e", "Q_t", "moved (confirmed; the second supernet alone)" if confirm else "moved",
                "moves expected under noise: this rule / plain threshold"):
        t.add_column(col)
    spaces = []
    for it in space:
        e, null = it["et_error"], it.get("null") or {}
        noise = " / ".join(f"{null[f'{k}_mean']:.2f} ± {null[f'{k}_se']:.2f}" for k in ("rule", "threshold_rule")) \
            if null else "-"
        moved = str(it["moved"])
        if "confirm" in it:
            moved += f" ({it['confirm']['moved']})"
        t.add_row(str(it["iteration"]), f"{e['q']:.2f}", f"{e['q_e']:.2f}", f"{e['q_t']:.2f}", moved, noise)
        spaces.append((f"iteration {it['iteration']}", it["space"]))
    spaces.append(("searched", space[-1]["next_space"]))
    score = demo / "2_score" / "result.json"
    if score.is_file():
        e = json.loads(score.read_text())["et_error"]
        t.add_row("searched (its stage-2 supernet)", f"{e['q']:.2f}", f"{e['q_e']:.2f}", f"{e['q_t']:.2f}", "-", "-")
    print_table(t)
    for name, s in spaces:  # depth / embed dim choices per stage
        desc = " | ".join(f"d{list(st.depth)} c{list(st.embed_dim)}" for st in SearchSpace.from_dict(s).stages)
        console.print(f"  {name}: {desc}", soft_wrap=True)
    evo = json.loads((demo / "3_evolution" / "result.json").read_text())
    ev = json.loads((demo / "5_evaluate" / "evaluation.json").read_text())
    pick = evo["picks"][0]
    t = Table(title="2. Found architecture (top-1 and top-5 in %)")
    for col in ("params", "MACs", "search top-1 (inherited)", "test top-1 (retrained)", "test top-5"):
        t.add_column(col)
    t.add_row(f"{ev['params']:,}", f"{ev['macs']:,}", f"{pick['top1']:.2f}", f"{ev['top1']:.2f}",
              f"{ev['top5']:.2f}")
    print_table(t)
    console.print(f"found: {pick['arch']}", soft_wrap=True)
    console.print(f"outputs: {demo}/\n"
                  f"  1_space/     searched_space.yaml, report.md, et_error.png, iter*/dimensions.png\n"
                  f"  2_supernet/  checkpoints/last.ckpt (supernet of the searched space)\n"
                  f"  2_score/     result.json (E-T Error of the searched space on that supernet)\n"
                  f"  3_evolution/ top/top1.yaml, archs.csv, pareto.png, history.png\n"
                  f"  4_retrain/   checkpoints/last.ckpt\n"
                  f"  5_evaluate/  evaluation.json\n"
                  f"  6_export/    config.json, model.safetensors, README.md: "
                  f"s3.from_pretrained(\"{demo / '6_export'}\") loads it", soft_wrap=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "logs/demo"))
