"""docs/results.md, regenerated from the committed rows alone (`bench/results/*.csv`), with the
plots it shows. Nothing here measures: every figure is recomputed from rows, so the page cannot
drift from the evidence, and `tests/test_published_figures.py` fails when it has.

    python -m bench.report            # writes docs/results.md and its plots
    python -m bench.report --check    # exit 1 when docs/results.md or a plot is not what the rows give
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))  # the bench scripts import their siblings by name

import ground_truth  # noqa: E402
import latency  # noqa: E402
import move_rule  # noqa: E402
import ranking_fidelity  # noqa: E402
import roofline  # noqa: E402
import search_evidence as evidence  # noqa: E402
import space_moves  # noqa: E402
import speed_rows  # noqa: E402
import tabular  # noqa: E402
from rows import read_rows  # noqa: E402

RESULTS = ROOT / "docs" / "results.md"
RESULTS_DIR = BENCH / "results"
PILOT_SEEDS = {"", "0", "1", "2"}  # "": hand and the pilot's band archs, which carry no search seed
CONSTRAINTS = "band_1m_macs"
RETRAIN_SEEDS = [0, 1]
PER_SEED_BAND = 4


def pm(mean: float, se: float, digits: int = 2) -> str:
    return f"{mean:+.{digits}f} ± {se:.{digits}f}"


def study_tests(rows: list[dict]) -> dict:
    """The pre-registered study's tests (and its SD re-estimate) on the study's rows, as published."""
    return evidence.preregistered_tests(rows, CONSTRAINTS, PER_SEED_BAND, RETRAIN_SEEDS)


def figures() -> dict:
    """The headline figures the summary, the README's verdict and the test quote."""
    rows = read_rows(evidence.ROWS)
    pilot = [r for r in rows if r["search_seed"] in PILOT_SEEDS]
    comparisons = {f"{a} - {b}": evidence.paired(evidence.per_seed(pilot, a), evidence.per_seed(pilot, b))
                   for a, b in evidence.PILOT_COMPARISONS}
    wide = ranking_fidelity.figure_of(read_rows(ranking_fidelity.ROWS), "wide")
    taus = ranking_fidelity.taus(wide)
    supernet_taus = [t["tau"] for t in taus["supernets"].values()]
    truth = ground_truth.truth()
    null = {r["rule"]: (float(r["moved_mean"]), float(r["moved_se"]), int(r["trials"]))
            for r in read_rows(move_rule.RESULTS) if r["kind"] == "null" and r["preset"] == "demo"
            and float(r["noise"]) == 1.5}
    return {"pilot": comparisons,
            "study": study_tests(rows),
            "space_claim": evidence.space_claim(pilot),
            "fidelity": {"archs": len(wide["archs"]), "params": taus["params"][0], "recipes": len(supernet_taus),
                         "lo": min(supernet_taus), "hi": max(supernet_taus), "agreement": taus["seed_vs_seed"][0]},
            "library": {f["kind"]: f for f in ground_truth.fidelity(truth)},
            "library_archs": sum("0" in v for v in truth.values()), "reliability": ground_truth.reliability(truth),
            "move_null": null, "moves": space_moves.decision(), "latency": latency.study_figures(),
            "confirmed_moves": space_moves.decision(space_moves.CONFIRM_ROWS)}


STUDY_CLAIMS = {"H1": "S3 minus random search", "H2": "S3 minus AutoFormer's evolution",
                "H3": "archs of S3's searched spaces minus archs of the initial space in the same budget"}


def study_verdict(study: dict) -> str:
    """H1-H3 in one sentence each: the difference, its one-sided p, Holm's, and the plan's decision."""
    parts = []
    for r in study["tests"][:3]:
        decided = evidence.verdict(r)
        holm = "" if (r["t_p"] < 0.05) == (r["holm_p"] < 0.05) else \
            f", {'not ' if r['holm_p'] >= 0.05 else ''}after Holm's correction over the three (p = {r['holm_p']:.2g})"
        parts.append(f"{r['name']}, {STUDY_CLAIMS[r['name']]}: {r['diff']:+.2f} ± {r['se']:.2f} points "
                     f"(p = {r['t_p']:.2g}): {decided}{holm}")
    return "Its verdict (one-sided paired t over search seeds): " + "; ".join(parts) + "."


def summary(f: dict) -> str:
    p, study, fid, mv, lat = f["pilot"], f["study"], f["fidelity"], f["moves"], f["latency"]
    s3r, s3a = p["s3 - random"], p["s3 - autoformer"]
    sc = f["space_claim"]
    significant = [name for name, c in (("S3 minus random search", s3r), ("S3 minus AutoFormer", s3a)) if c["p"] < 0.05]
    consistent = ", ".join(f"stage {s}'s {d}" for s, d in mv["consistent"]) or "no dimension"
    lines = [
        f"- **The pre-registered study** (S3 against random search, AutoFormer's evolution with its published "
        f"settings, generations scaled to equal evaluations, and a band-trained supernet) has "
        f"{len(study['seeds'])} of its {study['planned']} search seeds complete"
        + ("" if study["final"] or study["reestimate"] else
           f" ({len(evidence.STUDY_SEEDS)} unless the SD re-estimate after seed {evidence.REESTIMATE_SEEDS[-1]} asks "
           f"for more, at most {evidence.MAX_SEEDS})") + ". "
        + (study_verdict(study) if study["final"] else
           "Its hypotheses are tested once, when all are in; until then it gives no verdict."),
        f"- **The pilot** (3 search seeds, seen before the plan): S3 minus random search {pm(s3r['diff'], s3r['se'])} "
        f"points (two-sided paired t p = {s3r['p']:.2f}), S3 minus the demo-scaled AutoFormer evolution "
        f"{pm(s3a['diff'], s3a['se'])} (p = {s3a['p']:.2f}); "
        + (f"significant at 0.05: {', '.join(significant)}. " if significant else "neither is significant at 0.05. ")
        + f"Archs drawn from S3's searched spaces minus archs drawn from the initial space, in one "
        f"params-and-MACs budget: {pm(sc['diff'], sc['se'])} points of test top-1 ({sc['n'][1]} against "
        f"{sc['n'][0]} archs).",
    ]
    if mv["seeds"]:
        most = space_moves.majority(mv)
        on_most = space_moves.on_majority(mv, most)
        lines.append(f"- **The space moves** over the study's S3 seeds{'' if mv['final'] else ' so far'} "
                     f"({', '.join(mv['seeds'])}): iteration 0 "
                     f"moved {consistent} the same way in every seed. It made {mv['false']} move(s) of the other "
                     f"dimensions, all counted as false by the plan, against {mv['expected']:.2f} false moves the rule's null expects"
                     + (f"; {on_most} of them where most seeds moved ({space_moves.majority_names(most, mv)})"
                        if most else "") + "."
                     + (f" The pre-registered test (Poisson P = {mv['p']:.2g}): the rule's false-move control across "
                        f"supernet seeds {'fails' if mv['p'] < 0.05 else 'is not contradicted'}." if mv["final"] else "")
                     + confirmed_summary(f["confirmed_moves"], most))
    lines += [
        f"- **Ranking fidelity**: over {fid['archs']} archs of a params-only budget (750k-1M), {fid['recipes']} "
        f"supernet recipes rank standalone top-1 at Kendall tau {fid['lo']:.2f}-{fid['hi']:.2f}, the params count at {fid['params']:.2f}; "
        f"two standalone seeds agree at {fid['agreement']:.2f}."
        + (f" Against the ground-truth library{' so far' if f['library_archs'] < ground_truth.LIBRARY else ''} "
           f"({f['library_archs']} archs of the study's budget), the "
           f"initial space's supernet (S3's total epochs) ranks at {f['library']['autoformer']['tau']:.2f} ± "
           f"{f['library']['autoformer']['se']:.2f} (the mean over {len(f['library']['autoformer']['seeds'])} supernet "
           f"seeds; ± a bootstrap SE over the archs), params at {f['library']['autoformer']['params']:.2f}"
           + (f"; a noise-free predictor would reach {f['reliability']['ceiling_one']:.2f}" if f["reliability"] else "")
           + "." if "autoformer" in f["library"] else ""),
        "- **The move rule**: under pure noise at `make demo`'s pool it moves {:.2f} ± {:.2f} dimensions per "
        "iteration ({} trials), the paper's plain threshold rule {:.2f} ± {:.2f}.".format(
            *f["move_null"]["significant"][:3], *f["move_null"]["threshold"][:2]),
    ]
    if lat:
        lt, tp = lat["latency"], lat["top1"]
        lines.append(f"- **Latency**: evolution under a latency bound minus evolution under the MACs band: "
                     f"{pm(lt['mean'], lt['se'])} ms of measured latency (one-sided p = {lt['p']:.3f}, "
                     f"{len(lat['seeds'])} search seeds), {pm(tp['mean'], tp['se'])} points of validation top-1 "
                     f"(p = {tp['p']:.2f}); {lat['over_bound'][0]} of the {lat['over_bound'][1]} latency-bound "
                     f"picks timed above the bound when measured again.")
    return "\n".join(lines)


def confirmed_summary(c: dict, most: dict) -> str:
    if not c["seeds"]:
        return ""
    single = space_moves.decision(space_moves.ROWS, c["seeds"])
    dims = ", ".join(f"stage {st} {dim} {a} -> {b}" for (st, dim), (a, b) in space_moves.side_by_side(single, c).items())
    elsewhere = c["false"] - space_moves.on_majority(c, most)
    return (f" With `search.confirm` (measured on {len(c['seeds'])} of these seeds), moves per dimension, one supernet "
            f"-> confirmed by a second: {dims} of {len(c['seeds'])}; by the same conservative count {c['false']} "
            f"against {c['expected']:.2f} expected (one supernet: {single['false']} against {single['expected']:.2f})"
            + (f", {elsewhere} of them elsewhere than where most seeds moved with one supernet" if most else "")
            + ".")


def pilot_levels() -> str:
    """The pilot's and the study's levels side by side: the found archs' means, and the typical
    arch's from each one's `band` draws and from the library's archs neither drew."""
    rows = read_rows(evidence.ROWS)
    sides = {"the pilot": [r for r in rows if r["search_seed"] in PILOT_SEEDS],
             "the study": [r for r in rows if r["search_seed"] not in PILOT_SEEDS]}
    band = {k: [float(r["test_top1"]) for r in v if r["method"] == "band" and r["retrain_seed"] == "0"]
            for k, v in sides.items()}
    drawn = {r["arch"] for r in rows if r["method"] == "band"}
    others = [v["0"] for a, v in ground_truth.truth().items() if "0" in v and a not in drawn]
    found = {m: [evidence.mean_se(list(evidence.per_seed(v, m).values()))[0] for v in sides.values()]
             for m in ("s3", "random", "random_searched")
             if all(evidence.per_seed(v, m) for v in sides.values())}
    if not (all(band.values()) and len(others) >= 2 and found):
        return ""
    lo, se = evidence.mean_se(others)
    return ("\n\nLevels, the pilot against the study (means, %): found archs " +
            ", ".join(f"`{m}` {a:.2f} against {b:.2f}" for m, (a, b) in found.items()) +
            "; the typical arch, from each one's `band` draws, " +
            " against ".join(f"{statistics.fmean(v):.2f} ({len(v)} archs)" for v in band.values()) +
            f", and from the {len(others)} library archs neither drew, {lo:.2f} ± {se:.2f}. The tests pair the "
            "methods within a seed, so a level that a seed's methods share cancels.")


def study_section(f: dict) -> str:
    study = f["study"]
    rows = read_rows(evidence.ROWS)
    started = sorted({r["search_seed"] for r in rows if r["search_seed"] and int(r["search_seed"]) >= 3}, key=int)
    scores = study["scores"]
    lines = ["| search seed | " + " | ".join(f"`{m}`" for m in (*evidence.STUDY_METHODS, "searched", "band"))
             + " | complete |", "|---" * (len(evidence.STUDY_METHODS) + 4) + "|"]
    for s in started:
        cells = [f"{scores[m][s]:.2f}" if s in scores[m] and
                 evidence.found_in_rows(rows, m, s, RETRAIN_SEEDS) else "running" for m in evidence.STUDY_METHODS]
        cells += [f"{scores[m][s]:.2f}" if s in scores[m] else "running" for m in ("searched", "band")]
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {'yes' if s in study['seeds'] else 'no'} |")
    lines += ["", "Each cell: the found arch's standalone test top-1 (%), the mean of retraining seeds 0 and 1; "
                  f"`searched` and `band` (H3): the mean of the seed's {PER_SEED_BAND} archs drawn in the budget "
                  "from its searched space and from the initial space, retraining seed 0 only.", ""]
    sd = study["reestimate"]
    if sd:
        lines.append(f"**The SD re-estimate** (pre-registered, over seeds 3-8): H1's paired SD {sd['sds'][0]:.2f}, "
                     f"H2's {sd['sds'][1]:.2f}, pooled {sd['pooled']:.2f} points (designed: 0.63); 80 % power at 0.5 "
                     f"points needs {sd['needed']} search seeds, so the study runs {sd['planned']}. H3's paired SD "
                     f"over the same seeds is {sd['h3_sd']:.2f} (designed: 0.48), its power at 0.5 points over "
                     f"{sd['planned']} seeds {100 * sd['h3_power']:.0f} % (reported; the plan sizes the study from "
                     f"H1 and H2 alone).")
    else:
        lines.append("**The SD re-estimate** is due when seeds 3-8 are all complete.")
    lines += ["", evidence.preregistered(study)]
    return "\n".join(lines)


def latency_section() -> str:
    text = latency.report()
    return "\n".join(line for line in text.splitlines() if not line.startswith("plot:")).strip()


def render(docs: Path = RESULTS.parent) -> str:
    """The page as markdown; the plots are drawn under `docs` (search_evidence/, bench/)."""
    latency.FIGURES = docs / "bench"
    f = figures()
    fidelity_rows = read_rows(ranking_fidelity.ROWS)
    fidelity_figures = list(dict.fromkeys(r["figure"] for r in fidelity_rows))
    sections = [
        ("Results: what the evidence shows", 1, INTRO),
        ("In short", 2, summary(f)),
        ("The pre-registered study: S3 against its baselines (seeds 3-14)", 2,
         STUDY_INTRO + "\n\n" + study_section(f) + (
             "\n\nOver the complete seeds:\n\n" +
             evidence.report(docs / "search_evidence", set(f["study"]["seeds"]), (), "_study", f["study"]["final"]) +
             "\n\n| the found archs per method, complete study seeds | the space claim |\n|---|---|\n"
             "| ![](search_evidence/methods_study.png) | ![](search_evidence/space_claim_study.png) |"
             if len(f["study"]["seeds"]) >= 2 else "")),
        ("The pilot (search seeds 0-2)", 2,
         PILOT_INTRO + "\n\n" + evidence.report(docs / "search_evidence", PILOT_SEEDS) +
         "\n\n| the found archs per method | the space claim in the budget |\n|---|---|\n"
         "| ![](search_evidence/methods.png) | ![](search_evidence/space_claim.png) |" + pilot_levels()),
        ("Do the space moves replicate across supernet seeds?", 2, MOVES_INTRO + "\n\n" + space_moves.report()),
        ("A ground-truth library of the band", 2, LIBRARY_INTRO + "\n\n" + ground_truth.report(docs / "bench", "bench/library_fidelity.png") +
         "\n\n**A tabular benchmark** (`python bench/tabular.py`): " + TABULAR_INTRO + "\n\n" + tabular.report()),
        ("Ranking fidelity", 2, FIDELITY_INTRO + "\n\n" +
         ranking_fidelity.report(fidelity_rows, fidelity_figures, docs / "bench") + "\n\n" +
         " ".join(f"![{name}](bench/ranking_fidelity_{name}.png)" for name in fidelity_figures)),
        ("The move rule under pure noise", 2, MOVE_RULE_INTRO + "\n\n" + move_rule.report(read_rows(move_rule.RESULTS))),
        ("Latency: the predictor and a latency-bounded search", 2, LATENCY_INTRO + "\n\n" + latency_section() +
         "\n\n![latency predictor](bench/latency_predictor.png)\n\n![latency-bound vs MACs-band picks]"
         "(bench/latency_search.png)"),
        ("Speed on this CPU", 2, SPEED_INTRO + "\n\n" + roofline.report(
            read_rows(RESULTS_DIR / "roofline.csv"), read_rows(RESULTS_DIR / "roofline_levers.csv")) + "\n\n" +
         SPEED_SCRIPTS_INTRO + "\n\n" + speed_rows.report(read_rows(speed_rows.ROWS))),
    ]
    return "\n\n".join(f"{'#' * level} {title}\n\n{body.strip()}" for title, level, body in sections) + "\n"


INTRO = """\
*Generated by `python -m bench.report` from `bench/results/*.csv` alone; do not edit by hand.*

Everything here was measured on the embedded benchmark (Fashion-MNIST at 32x32, the `wide` or `tiny`
space) on a 2-core CPU machine (AMD EPYC, no GPU). Nothing was run on ImageNet or on a GPU. ± is a
standard error; each table says over what (search seeds, supernet seeds, or a bootstrap over archs). The
methods, the commands that measured each row and the plans written before the data are in
[bench/README.md](../bench/README.md)."""

STUDY_INTRO = """\
Every method searches the `wide` initial space under one params AND MACs budget
(`constraints=band_1m_macs`: 750k-1M params, 20M-30M MACs); every found arch is retrained
standalone (2 epochs of 20,000 images, retraining seeds 0 and 1) and tested on the 10,000 test
images. The plan (hypotheses H1-H3, the tests, 12 search seeds, the stopping rule) was committed
before the first row: bench/README.md, "Pre-registered study (issue 43)". Rows:
`bench/results/search_evidence.csv`, `search_fidelity.csv`."""

PILOT_INTRO = """\
The first three search seeds, run before the plan: `s3`, the demo-scaled `autoformer` evolution,
`random` and `random_searched`, and the Swin-style `hand` design (one arch with Swin's proportions,
shown for orientation, not a baseline a search must beat). Their SDs sized the study; they are not
counted in its tests."""

MOVES_INTRO = """\
Iteration 0 of every S3 seed starts from the same initial space on its own supernet, so its moves
are replicates. A real effect the rule detects with full power moves its dimension in every seed;
the rule's null (it shuffles the archs of one pool scored on one supernet) says how many false
moves to expect. Rows: `bench/results/space_moves.csv`; the confirmation rule's (`search.confirm`,
measured on the same supernets): `confirm_moves.csv`."""

LIBRARY_INTRO = """\
250 archs drawn uniformly in the band (`band:0`, a fixed sequence of draws; 150 planned, extended
for the fidelity's target SE), to be trained standalone with the study's recipe (seed 0; seed 1
too for the first 30) and scored by the study's finished supernets (those of a
searched space score only the archs it holds). Rows:
`bench/results/ground_truth.csv`, `library_scores.csv`; they fill in the background
(bench/README.md, "A ground-truth library of the band")."""

TABULAR_INTRO = """\
searches confined to the library rank its archs by a supernet's inherited top-1
(`bench/results/library_scores.csv`) and are scored by their pick's standalone top-1, so each runs
many search seeds in seconds. `random` and AutoFormer's `evolution` (its candidates snapped to the
nearest library arch) search the initial space's supernets; S3's stage 3 searches the library archs
inside the seed's searched space with its supernet, at random: a searched space holding fewer
archs than the evaluations is evaluated whole (its pick is then the supernet's top arch), and one
already evaluated whole at a smaller budget is not listed again at a larger one."""

FIDELITY_INTRO = """\
Kendall tau of a supernet's inherited top-1 against the mean standalone top-1 of two seeds, beside
the params count's and the seed-to-seed ceiling. Rows: `bench/results/ranking_fidelity.csv`."""

MOVE_RULE_INTRO = """\
Synthetic errors through the real pool, fit and shift, 12 trials per cell. Noise 1.5 points is the
per-arch noise measured on `make demo`'s pool; 3.0 is an upper bound. Rows:
`bench/results/move_rule.csv`."""

LATENCY_INTRO = """\
Archs timed whole on this CPU (1 thread, fp32, in turns, two passes) against the table predictor,
and evolution under a latency bound against evolution under the MACs band (3 search seeds). Rows:
`bench/results/latency*.csv`."""

SPEED_INTRO = """\
Achieved MAC/s against this CPU's measured bf16 matmul peak and each step's roofline bound, and
each speed lever before and after, timed side by side. Rows: `bench/results/roofline*.csv`. The
milliseconds of one configuration differ between sessions (machine load, other processes): compare
only a row's before and after, timed in one run. A commit marked `+dirty` was measured from a
working tree with uncommitted changes on top of it."""

SPEED_SCRIPTS_INTRO = """\
The smaller speed scripts (`make bench`), each ratio timed side by side in one run, and the
estimate of the S3 flow's GPU-hours on ImageNet (computed from the configs and one published Swin-B
throughput; no GPU measured it). Rows: `bench/results/speed.csv`."""


def plots_of(page: str) -> list[str]:
    """The PNGs a page shows, as paths from docs/, each once."""
    return list(dict.fromkeys(re.findall(r"\]\(([^)]+\.png)\)", page)))


def stale_plots(page: str, drawn: Path) -> list[str]:
    """The page's plots whose committed file under docs/ is missing or not byte for byte the one
    `render(drawn)` drew."""
    return [p for p in plots_of(page) if not (RESULTS.parent / p).is_file()
            or (RESULTS.parent / p).read_bytes() != (drawn / p).read_bytes()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only compare docs/results.md with what the rows give")
    args = p.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as drawn:  # redrawn elsewhere, then compared byte for byte
            text = render(Path(drawn))
            plots, stale = plots_of(text), stale_plots(text, Path(drawn))
        page = RESULTS.relative_to(ROOT)
        if RESULTS.read_text() != text:
            sys.exit(f"{page} is not what the rows give: run `python -m bench.report`")
        if stale:
            sys.exit(f"{', '.join(f'docs/{p}' for p in stale)} {'is' if len(stale) == 1 else 'are'} not what the rows "
                     f"draw: run `python -m bench.report`")
        print(f"{page} and its {len(plots)} plots match the rows")
        return
    text = render()
    RESULTS.write_text(text)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
