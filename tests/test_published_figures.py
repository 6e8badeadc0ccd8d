"""Published figures recomputed from the committed rows: docs/results.md is regenerated from them
whole, and a figure that bench/README.md or the README quotes and the rows no longer give fails here."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def latency_report(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import latency
    finally:
        sys.path.remove(str(ROOT / "bench"))
    latency.FIGURES = tmp_path_factory.mktemp("figures")  # the plots go elsewhere: only the figures are compared
    return latency, latency.report()


@pytest.mark.slow  # bootstrap SEs over the rows
def test_the_latency_figures_in_bench_readme_are_the_rows(latency_report):
    """bench/README.md's latency section quotes the rows: its tables are the generated page's (it
    links them), the figures its prose quotes are recomputed here."""
    latency, text = latency_report
    readme = (ROOT / "bench" / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 4 + 1 + 3  # two headers, four settings, three search seeds
    assert not any(line in readme for line in rows[1:])  # no hand copy of a table to drift
    assert "(../docs/results.md#latency-the-predictor-and-a-latency-bounded-search)" in readme
    study = latency.study_figures()
    lat, top = study["latency"], study["top1"]
    quoted = f"{abs(lat['mean']):.2f} ± {lat['se']:.2f} ms"
    assert quoted in readme
    assert f"p = {lat['p']:.3f}" in readme
    assert f"{top['mean']:.2f} ± {top['se']:.2f} points" in readme
    assert f"{study['over_bound'][0]} of the {study['over_bound'][1]} latency-bound picks" in readme
    assert f"{study['drift']:.2f}x slower" in readme


@pytest.fixture(scope="module")
def report():
    from bench import report

    return report


@pytest.mark.slow  # every section's figures, the bootstraps included (about a minute)
def test_docs_results_md_is_what_the_rows_give(report, tmp_path, monkeypatch):
    """docs/results.md and its plots are regenerated from the rows by `python -m bench.report`: a row
    added, changed or removed without regenerating them, or a hand edit of the page, fails here. Another machine
    gives the same page: the latency figures are the committed rows', not this host's."""
    monkeypatch.setattr(report.latency, "machine", lambda: "another CPU | torch 0.0")
    page = report.render(tmp_path)
    assert page == (ROOT / "docs" / "results.md").read_text()
    assert report.plots_of(page)
    assert report.stale_plots(page, tmp_path) == []  # drawn from the rows, and committed as drawn


def _readme_verdict() -> str:
    readme = (ROOT / "README.md").read_text()
    return " ".join(readme[readme.index("## Does the search work?"):readme.index("## More")].split())


@pytest.mark.slow  # the study's figures: bootstraps over the rows
def test_the_readme_verdict_follows_the_study(report):
    """Until the pre-registered study is final the README says it is running; once it is, its
    verdict quotes H1-H3 from the rows (difference, SE, one-sided paired t p), H1's interval, H3's
    Holm p and the band control, so the paragraph cannot stay the pilot's or drift from the rows."""
    study = report.figures()["study"]
    verdict = _readme_verdict()
    if not study["final"]:
        assert "is running; its verdict will replace this paragraph" in verdict
        return
    h1, h2, h3, c1 = study["tests"][:4]
    for r in (h1, h2, h3):
        quoted = f"{r['diff']:+.2f} ± {r['se']:.2f} points (p = {r['t_p']:.2g})"
        assert quoted in verdict, quoted
    assert f"95 % interval {h1['lo']:+.2f} to {h1['hi']:+.2f}" in verdict
    assert f"Holm's correction over the three hypotheses (p = {h3['holm_p']:.2g})" in verdict
    assert (c1["a"], c1["b"]) == ("band_random", "random") and f"({c1['diff']:+.2f} ± {c1['se']:.2f} points)" in verdict
    supported = [r["name"] for r in (h1, h2, h3) if r["t_p"] < 0.05]
    assert supported == ["H3"], "the paragraph's words (neither H1 nor H2 supported, H3 supported) no longer hold"


def test_the_sd_re_estimate_in_the_plan_is_the_rows(report):
    """The study's plan (bench/README.md) records its pre-registered SD re-estimate, as the plan
    asks; the figures it quotes are recomputed from the rows of seeds 3-8."""
    sd = report.study_tests(report.read_rows(report.evidence.ROWS))["reestimate"]
    assert sd is not None  # seeds 3-8 are complete in the committed rows
    plan = " ".join((ROOT / "bench" / "README.md").read_text().split())
    for quoted in (f"H1's paired SD over seeds 3-8 is {sd['sds'][0]:.2f} points, H2's {sd['sds'][1]:.2f}, pooled "
                   f"{sd['pooled']:.2f}", f"needs {sd['needed']} search seeds, so N = max(12, {sd['needed']}) = "
                   f"{sd['planned']}", f"H3's paired SD over the same seeds is {sd['h3_sd']:.2f}, its power over "
                   f"{sd['planned']} seeds {100 * sd['h3_power']:.0f} %"):
        assert quoted in plan, quoted


def test_the_space_move_decision_in_the_plan_is_the_rows(report):
    """The plan (bench/README.md) records the pre-registered space-move decision at 12 seeds; its
    count, expectation, tail and the most-moved dimension's k of n are recomputed from the rows."""
    d = report.space_moves.decision()
    assert d["final"] and d["p"] < 0.05  # the decision is taken, and it is the one the plan wrote down
    stage4 = sum(report.space_moves.moved(r) for r in d["by_dim"][(4, "embed_dim")])
    plan = " ".join((ROOT / "bench" / "README.md").read_text().split())
    for quoted in (f"Over the study's {len(d['seeds'])} S3 seeds ({d['seeds'][0]}-{d['seeds'][-1]})",
                   f"stage 4 embed_dim moved up in {stage4} of {len(d['seeds'])}",
                   f"{d['false']} moves against {d['expected']:.2f} expected by the rule's null, Poisson P = "
                   f"{d['p']:.1e} < 0.05"):
        assert quoted in plan, quoted
