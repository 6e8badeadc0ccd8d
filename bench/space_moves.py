"""Do the space moves replicate across supernet seeds? (issue 43, section 5)

The move rule's null resamples one pool on one supernet; it does not see the supernet's own
training noise. Every S3 search seed of the study (bench/search_evidence.py) ran the same space
search from the same initial space on its own supernet, so iteration 0's decisions are replicates:
a dimension with a real effect moves the same way in every seed, one moved by one supernet's noise
moves in a few. This reads each seed's space-search state into rows and reports, per dimension,
how often and which way it moved, beside what the rule's null expects.

    python bench/space_moves.py --out /work/study_out      # rows for the seeds found there (skip-done)
    python bench/space_moves.py --report                   # from the rows alone

Rows: bench/results/space_moves.csv (one per seed, iteration, stage and dimension).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rows import append_row, read_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROWS = ROOT / "bench" / "results" / "space_moves.csv"
COLUMNS = ["seed", "iteration", "stage", "dimension", "action", "old", "new", "change", "se", "p_adjusted",
           "null_moves_mean", "null_moves_se", "dimensions"]


def collect(out: Path) -> int:
    done = {r["seed"] for r in read_rows(ROWS)}
    added = 0
    for state in sorted(out.glob("seed*/s3_space/search_state.json")):
        seed = state.parts[-3].removeprefix("seed")
        if seed in done or not (state.parent / "result.json").is_file():  # finished space searches only
            continue
        for it in json.loads(state.read_text())["iterations"]:
            null = it.get("null") or {}
            for d in it["decisions"]:
                append_row(ROWS, COLUMNS, {
                    "seed": seed, "iteration": it["iteration"], "stage": d["stage"] + 1, "dimension": d["dimension"],
                    "action": d["action"], "old": json.dumps(d.get("old")), "new": json.dumps(d.get("new")),
                    "change": d.get("change"), "se": d.get("se"), "p_adjusted": d.get("p_adjusted"),
                    "null_moves_mean": null.get("rule_mean"), "null_moves_se": null.get("rule_se"),
                    "dimensions": len(it["decisions"])})
        added += 1
    return added


def moved(row: dict) -> bool:
    return row["old"] != row["new"]


def report() -> str:
    rows = [r for r in read_rows(ROWS) if r["iteration"] == "0"]
    seeds = sorted({r["seed"] for r in rows}, key=int)
    if not seeds:
        return "no rows yet: python bench/space_moves.py --out <the study's --out>"
    by_dim = defaultdict(list)
    for r in rows:
        by_dim[(int(r["stage"]), r["dimension"])].append(r)
    lines = [f"Iteration 0 (the same initial space, one supernet per seed), seeds {', '.join(seeds)}:", "",
             "| stage | dimension | moved in | directions (old -> new) |", "|---|---|---|---|"]
    sporadic = sporadic_moves = 0
    for (stage, dim), rs in sorted(by_dim.items()):
        k = sum(moved(r) for r in rs)
        if 0 < k < len(rs):
            sporadic += 1
            sporadic_moves += k
        if k:
            dirs = "; ".join(f"seed {r['seed']}: {r['old']} -> {r['new']}" for r in rs if moved(r))
            lines.append(f"| {stage} | {dim} | {k} of {len(rs)} | {dirs} |")
    total = sum(moved(r) for r in rows)
    null = [float(r["null_moves_mean"]) for r in rows if r["null_moves_mean"]]
    per_seed = {r["seed"]: float(r["null_moves_mean"]) for r in rows if r["null_moves_mean"]}
    expected = sum(per_seed.values())
    lines += ["", f"- moves made in iteration 0: {total} over {len(seeds)} seeds x "
                  f"{len(by_dim)} dimensions; the rule's null (one pool, one supernet) expects "
                  f"{expected:.2f} false moves over these seeds ({', '.join(f'{v:.2f}' for v in per_seed.values())} "
                  f"per seed)" if null else "",
              f"- dimensions that moved in some seeds but not in all: {sporadic}, with {sporadic_moves} move(s)"]
    if null:
        from scipy.stats import poisson

        p = float(poisson.sf(sporadic_moves - 1, expected)) if sporadic_moves else 1.0
        lines.append(f"- counting every move of those as false (conservative: a real effect the rule detects with less than "
                     f"full power also moves in some seeds only), "
                     f"{sporadic_moves} false move(s) against the null's {expected:.2f}: Poisson P(at least "
                     f"{sporadic_moves}) = {p:.2f}; the rule's false-move control "
                     f"{'fails' if p < 0.05 else 'is not contradicted'} across supernet seeds at alpha = 0.05")
    return "\n".join(line for line in lines if line is not None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="bench/search_evidence.py's --out (seed*/s3_space/)")
    p.add_argument("--report", action="store_true", help="only the report, from the rows")
    args = p.parse_args()
    if not args.report and args.out:
        print(f"{collect(args.out)} seed(s) added to {ROWS.relative_to(ROOT)}")
    print(report())


if __name__ == "__main__":
    main()
