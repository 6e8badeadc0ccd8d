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


STUDY_SEEDS = 12  # the decision is taken over the study's first 12 S3 seeds (bench/README.md)


def decision() -> dict:
    """Iteration 0's moves over the study's S3 seeds (3 on, the first 12): the dimensions that moved
    the same way in every seed, the moves of every other dimension (counted as false: conservative),
    the null's expected false moves summed over the seeds, and the Poisson tail of the count."""
    from scipy.stats import poisson

    rows = [r for r in read_rows(ROWS) if r["iteration"] == "0" and int(r["seed"]) >= 3]
    seeds = sorted({r["seed"] for r in rows}, key=int)[:STUDY_SEEDS]
    rows = [r for r in rows if r["seed"] in seeds]
    by_dim = defaultdict(list)
    for r in rows:
        by_dim[(int(r["stage"]), r["dimension"])].append(r)
    consistent = {d: rs for d, rs in by_dim.items() if all(moved(r) for r in rs) and len({r["new"] for r in rs}) == 1}
    false = sum(moved(r) for d, rs in by_dim.items() if d not in consistent for r in rs)
    expected = sum({r["seed"]: float(r["null_moves_mean"]) for r in rows if r["null_moves_mean"]}.values())
    return {"seeds": seeds, "by_dim": dict(sorted(by_dim.items())), "consistent": sorted(consistent),
            "false": false, "expected": expected, "p": float(poisson.sf(false - 1, expected)) if false else 1.0,
            "final": len(seeds) >= STUDY_SEEDS}


def confirmed_by_pairs(d: dict) -> dict:
    """The confirmation rule estimated from pairs of study seeds: per dimension, the share of seed
    pairs that made the same move (both moved, to the same new choices); the expected confirmed
    moves per iteration among the dimensions that did not move in every seed, beside the single
    rule's moves per seed among them (the same conservative count)."""
    import itertools

    seeds = d["seeds"]
    pairs = list(itertools.combinations(seeds, 2))
    share, false_confirmed, false_single = {}, 0.0, 0.0
    for dim, rs in d["by_dim"].items():
        new = {r["seed"]: r["new"] for r in rs if moved(r)}
        share[dim] = sum(a in new and b in new and new[a] == new[b] for a, b in pairs) / len(pairs) if pairs else 0.0
        if dim not in d["consistent"]:
            false_confirmed += share[dim]
            false_single += len(new) / len(seeds)
    return {"pairs": len(pairs), "share": share, "false_confirmed": false_confirmed, "false_single": false_single}


def report() -> str:
    d = decision()
    if not d["seeds"]:
        return "No study seed's space search has finished yet (`python bench/space_moves.py --out <the study's --out>`)."
    lines = [f"Iteration 0 (the same initial space, one supernet per seed), study seeds {', '.join(d['seeds'])}:", "",
             "| stage | dimension | moved in | directions (old -> new) |", "|---|---|---|---|"]
    for (stage, dim), rs in d["by_dim"].items():
        k = sum(moved(r) for r in rs)
        if k:
            dirs = "; ".join(f"seed {r['seed']}: {r['old']} -> {r['new']}" for r in rs if moved(r))
            lines.append(f"| {stage} | {dim} | {k} of {len(rs)} | {dirs} |")
    verdict = ("fails" if d["p"] < 0.05 else "is not contradicted") if d["final"] else \
        f"is decided at {STUDY_SEEDS} seeds (interim)"
    lines += ["", f"- Dimensions that moved the same way in every seed: "
                  f"{', '.join(f'stage {s} {dim}' for s, dim in d['consistent']) or 'none'}.",
              f"- Moves of every other dimension, all counted as false (conservative: a real effect the rule "
              f"detects with less than full power also moves in some seeds only): {d['false']}, against "
              f"{d['expected']:.2f} false moves the rule's null (one pool on one supernet) expects over these "
              f"{len(d['seeds'])} seeds; Poisson P(at least {d['false']}) = {d['p']:.2g}. The rule's false-move "
              f"control across supernet seeds {verdict}."]
    c = confirmed_by_pairs(d)
    if c["pairs"]:
        confirmed = [f"stage {st} {dim} {v:.2f}" for (st, dim), v in c["share"].items() if v]
        lines.append(f"- The confirmation rule, estimated from the {c['pairs']} pairs of these seeds (a move kept "
                     f"when two supernets make it; bench/README.md): share of pairs confirming a move: "
                     f"{', '.join(confirmed) or 'none'}. Moves per iteration among the dimensions that did not move "
                     f"in every seed: {c['false_single']:.2f} with one supernet, {c['false_confirmed']:.2f} confirmed "
                     f"by a second; the cost is one more supernet training per iteration.")
    return "\n".join(lines)


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
