"""Do the space moves replicate across supernet seeds? (issue 43, section 5)

The move rule's null resamples one pool on one supernet; it does not see the supernet's own
training noise. Every S3 search seed of the study (bench/search_evidence.py) ran the same space
search from the same initial space on its own supernet, so iteration 0's decisions are replicates:
a dimension with a real effect the rule detects with full power moves the same way in every seed,
one moved by one supernet's noise moves in a few. This reads each seed's space-search state into
rows and reports, per dimension, how often and which way it moved, beside what the rule's null
expects.

    python bench/space_moves.py --out <the study's --out>      # rows for the seeds found there (skip-done)
    python bench/space_moves.py --confirm <the study's --out>  # the confirmation rule on the study's supernets
    python bench/space_moves.py --report                       # from the rows alone

Rows: bench/results/space_moves.csv (one per seed, iteration, stage and dimension) and
confirm_moves.csv (search.confirm's iteration-0 decisions: each seed's pool on its own supernet
and on the next study seed's).
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
CONFIRM_ROWS = ROOT / "bench" / "results" / "confirm_moves.csv"
STUDY_SEEDS = 12  # the decision is taken over the study's first 12 S3 seeds (bench/README.md)
FIRST_STUDY_SEED = 3  # seeds 0-2 are the pilot's
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


CONFIRM_COLUMNS = ["seed", "confirm_seed", "stage", "dimension", "action", "old", "new", "second_action", "second_new",
                   "null_moves_mean", "null_moves_se", "dimensions"]


def partner(seed: int) -> int:
    """The study seed whose iteration-0 supernet confirms `seed`'s moves: the next one (14's is 3)."""
    first = FIRST_STUDY_SEED
    return first + (seed - first + 1) % STUDY_SEEDS


def iteration0(search: Path):
    """A finished space search's iteration 0: (space, pool, errors, its search config), the pool
    redrawn as the search drew it and checked against the archs it scored."""
    import dataclasses

    from omegaconf import OmegaConf

    from s3.constraints import Constraints
    from s3.search.configs import SpaceSearch
    from s3.search.pool import sample_pool
    from s3.search.report import read_csv
    from s3.space import SearchSpace

    cfg = OmegaConf.to_container(OmegaConf.load(search / "config.yaml"), resolve=False)
    space = SearchSpace.from_yaml(search / "iter0" / "space.yaml")
    c = cfg["constraints"]
    constraints = Constraints(space, c.get("params"), c.get("macs") or c.get("flops"), num_classes=10)
    known = {f.name for f in dataclasses.fields(SpaceSearch)}
    s = SpaceSearch(**{k: v for k, v in cfg["search"].items() if k in known})
    pool = sample_pool(space, constraints, s.samples, f"s3-space:{cfg['seed']}:0", s.subspace)
    top1 = {r["arch"]: float(r["top1"]) for r in read_csv(search / "iter0" / "archs.csv")}
    if sorted(str(m.arch) for m in pool) != sorted(top1):
        raise SystemExit(f"{search}: the redrawn iteration-0 pool differs from the one its search scored")
    return space, pool, [100.0 - top1[str(m.arch)] for m in pool], s


def confirm(out: Path) -> int:
    """search.confirm's iteration-0 decisions for every finished study seed whose partner's space
    search has finished too: its pool scored on the partner's iteration-0 supernet, decided by the
    rule's own code. The single rule recomputed from the same errors must give the search's own
    decisions (a check that the redrawn pool and config are the search's)."""
    import dataclasses
    import time

    from search_evidence import inherited_top1, search_split

    from s3.search.space_search import analyse
    from s3.train import LAST_CKPT

    done = {r["seed"] for r in read_rows(CONFIRM_ROWS)}
    finished = {int(p.parts[-3].removeprefix("seed")) for p in out.glob("seed*/s3_space/result.json")}
    split, added = None, 0
    for seed in sorted(finished):
        other = partner(seed)
        if seed < FIRST_STUDY_SEED or str(seed) in done or other not in finished:
            continue
        search = out / f"seed{seed}" / "s3_space"
        space, pool, errors, s = iteration0(search)
        own = json.loads((search / "search_state.json").read_text())["iterations"][0]["decisions"]
        alone = analyse(space, pool, [errors], s, seed=seed * 1000)["decisions"]
        if [d.to_dict()["action"] for d in alone] != [d["action"] for d in own]:
            raise SystemExit(f"seed {seed}: the recomputed single-supernet decisions differ from its search's")
        split = split or search_split()
        t0 = time.time()
        print(f"[{time.strftime('%H:%M:%S')}] seed {seed}: its iteration-0 pool ({len(pool)} archs) on seed "
              f"{other}'s supernet", flush=True)
        ckpt = out / f"seed{other}" / "s3_space" / "iter0" / LAST_CKPT
        top1 = {}
        for arch, t in inherited_top1(ckpt, split, [m.arch for m in pool]):
            top1[arch] = t
            if len(top1) % 40 == 0:
                print(f"[{time.strftime('%H:%M:%S')}]   {len(top1)} of {len(pool)} scored", flush=True)
        second = [100.0 - top1[m.arch] for m in pool]
        a = analyse(space, pool, [errors, second], dataclasses.replace(s, confirm=True), seed=seed * 1000)
        theirs = {(d.stage, d.dimension): d for d in a["supernets"][1]["decisions"]}
        null = a["null"]
        for d in a["decisions"]:
            t = theirs[(d.stage, d.dimension)]
            append_row(CONFIRM_ROWS, CONFIRM_COLUMNS, {
                "seed": seed, "confirm_seed": other, "stage": d.stage + 1, "dimension": d.dimension,
                "action": d.action, "old": json.dumps(list(d.old)), "new": json.dumps(list(d.new)),
                "second_action": t.action, "second_new": json.dumps(list(t.new)),
                "null_moves_mean": null.get("rule_mean"), "null_moves_se": null.get("rule_se"),
                "dimensions": len(a["decisions"])})
        print(f"[{time.strftime('%H:%M:%S')}] seed {seed}: {sum(d.moved for d in a['decisions'])} move(s) confirmed "
              f"({time.time() - t0:.0f} s)", flush=True)
        added += 1
    return added


def moved(row: dict) -> bool:
    return row["old"] != row["new"]


def decision(path: Path | None = None, seeds: list[str] | None = None) -> dict:
    """Iteration 0's moves over the study's S3 seeds (3 on, the first 12, or `seeds`): the dimensions
    that moved the same way in every seed, the moves of every other dimension (counted as false:
    conservative), the null's expected false moves summed over the seeds, and the Poisson tail of
    the count. `path`: the single rule's rows or the confirmation rule's (confirm_moves.csv)."""
    from scipy.stats import poisson

    rows = [r for r in read_rows(path or ROWS) if r.get("iteration", "0") == "0" and int(r["seed"]) >= FIRST_STUDY_SEED]
    seeds = seeds if seeds is not None else sorted({r["seed"] for r in rows}, key=int)[:STUDY_SEEDS]
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


def moves_table(d: dict) -> list[str]:
    lines = ["| stage | dimension | moved in | directions (old -> new) |", "|---|---|---|---|"]
    for (stage, dim), rs in d["by_dim"].items():
        k = sum(moved(r) for r in rs)
        if k:
            dirs = "; ".join(f"seed {r['seed']}: {r['old']} -> {r['new']}" for r in rs if moved(r))
            lines.append(f"| {stage} | {dim} | {k} of {len(rs)} | {dirs} |")
    return lines


def false_moves(d: dict) -> str:
    return (f"{d['false']}, against {d['expected']:.2f} false moves over these {len(d['seeds'])} seeds by the "
            f"rule's null (which shuffles one pool's archs scored on one supernet, or two); Poisson "
            f"P(at least {d['false']}) = {d['p']:.2g}")


def majority(d: dict) -> dict[tuple[int, str], str]:
    """(stage, dimension) -> the choices it moved to in more than half the seeds, for the dimensions
    that did not move the same way in every seed."""
    out = {}
    for dim, rs in d["by_dim"].items():
        news = [r["new"] for r in rs if moved(r)]
        top = max(set(news), key=news.count, default=None)
        if dim not in d["consistent"] and top is not None and 2 * news.count(top) > len(d["seeds"]):
            out[dim] = top
    return out


def on_majority(d: dict, most: dict[tuple[int, str], str]) -> int:
    """The moves of `d` counted as false that went where `most` says most seeds moved (a move the
    other way stays a false move under any reading)."""
    return sum(moved(r) and r["new"] == new for dim, new in most.items() if dim not in d["consistent"]
               for r in d["by_dim"].get(dim, []))


def majority_names(most: dict[tuple[int, str], str], by: dict) -> str:
    return ", ".join(f"stage {s} {dim} to {new}, {sum(moved(r) and r['new'] == new for r in by['by_dim'][(s, dim)])} "
                     f"of {len(by['seeds'])} seeds" for (s, dim), new in most.items())


def without_majority(d: dict, single: dict | None = None) -> list[str]:
    """The conservative count again without the moves to where most seeds moved a dimension (by the
    single rule: `single`, else `d`): the reading that those are real effects found with less than
    full power (not in the plan). The null's expectation is kept whole, so the tail is an upper bound."""
    from scipy.stats import poisson

    by = single or d
    most = majority(by)
    if not most:
        return []
    rest = d["false"] - on_majority(d, most)
    tail = (f"{rest} move(s) against at most {d['expected']:.2f} expected; Poisson P(at least {rest}) <= "
            f"{float(poisson.sf(rest - 1, d['expected'])):.2g}" if rest else
            f"no move, against at most {d['expected']:.2f} expected")
    return [f"- Without the moves to where most seeds moved a dimension with one supernet ({majority_names(most, by)}), "
            f"read as real effects the rule finds with less than full power (a reading added after the data, not in "
            f"the plan): {tail}."]


def report() -> str:
    d = decision()
    if not d["seeds"]:
        return "No study seed's space search has finished yet (`python bench/space_moves.py --out <the study's --out>`)."
    lines = [f"Iteration 0 (the same initial space, one supernet per seed), study seeds {', '.join(d['seeds'])}:", "",
             *moves_table(d)]
    verdict = ("fails" if d["p"] < 0.05 else "is not contradicted") if d["final"] else \
        (f"is tested at {STUDY_SEEDS} seeds, as planned; the count can only grow as seeds are added (interim)")
    lines += ["", f"- Dimensions that moved the same way in every seed: "
                  f"{', '.join(f'stage {s} {dim}' for s, dim in d['consistent']) or 'none'}.",
              f"- Moves of every other dimension, all counted as false (conservative: a real effect the rule "
              f"detects with less than full power also moves in some seeds only): {false_moves(d)}. The rule's "
              f"false-move control across supernet seeds {verdict}."]
    lines += without_majority(d)
    c = confirmed_by_pairs(d)
    if c["pairs"]:
        confirmed = [f"stage {st} {dim} {v:.2f}" for (st, dim), v in c["share"].items() if v]
        lines.append(f"- The confirmation rule, estimated from the {c['pairs']} pairs of these seeds (a move kept "
                     f"when two supernets make it; bench/README.md): share of pairs confirming a move: "
                     f"{', '.join(confirmed) or 'none'}. Moves per iteration among the dimensions that did not move "
                     f"in every seed: {c['false_single']:.2f} with one supernet, {c['false_confirmed']:.2f} confirmed "
                     f"by a second; the cost is one more supernet training per iteration.")
    return "\n".join(lines + confirm_report())


def side_by_side(single: dict, confirmed: dict) -> dict:
    """(stage, dimension) -> (moves by the single rule, moves by the confirmed rule) over the same
    seeds, for every dimension either moved."""
    count = [{dim: sum(moved(r) for r in rs) for dim, rs in d["by_dim"].items()} for d in (single, confirmed)]
    return {dim: (count[0].get(dim, 0), count[1].get(dim, 0)) for dim in sorted({*count[0], *count[1]})
            if count[0].get(dim, 0) or count[1].get(dim, 0)}


def confirm_report() -> list[str]:
    """The confirmation rule as measured (confirm_moves.csv), beside the single rule on the same seeds."""
    c = decision(CONFIRM_ROWS)
    if not c["seeds"]:
        return []
    single = decision(ROWS, c["seeds"])
    pairs = {r["seed"]: r["confirm_seed"] for r in read_rows(CONFIRM_ROWS)}
    return ["", f"**The confirmation rule measured** (`search.confirm`: each seed's iteration-0 pool scored on its own "
                f"supernet and on the next study seed's, decided by the rule's code; seeds "
                f"{', '.join(f'{s} (with {pairs[s]})' for s in c['seeds'])}):", "", *moves_table(c), "",
            f"- Moves of the dimensions that did not move in all these seeds (the same conservative count): "
            f"confirmed rule {false_moves(c)}; single rule on the same seeds {single['false']} against "
            f"{single['expected']:.2f} (P = {single['p']:.2g}).",
            *without_majority(c, decision()),
            "- Per dimension, moves on these seeds, one supernet -> confirmed by a second (a breakdown added after "
            "the measurement, not in its plan): " + "; ".join(
                f"stage {st} {dim} {a} -> {b} of {len(c['seeds'])}" for (st, dim), (a, b) in side_by_side(single, c).items())
            + ".",
            "- Cost: one more supernet training and pool scoring per iteration (a 2-iteration search's space-search "
            "supernet epochs 3 -> 6, its pool evaluations 320 -> 640)."]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="bench/search_evidence.py's --out (seed*/s3_space/)")
    p.add_argument("--confirm", type=Path, metavar="OUT",
                   help="measure search.confirm on the supernets of bench/search_evidence.py's --out (skip-done)")
    p.add_argument("--report", action="store_true", help="only the report, from the rows")
    args = p.parse_args()
    if not args.report and args.out:
        print(f"{collect(args.out)} seed(s) added to {ROWS.relative_to(ROOT)}")
    if not args.report and args.confirm:
        print(f"{confirm(args.confirm)} seed(s) added to {CONFIRM_ROWS.relative_to(ROOT)}")
    print(report())


if __name__ == "__main__":
    main()
