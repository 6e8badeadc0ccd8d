"""Published figures recomputed from the committed rows: a figure in bench/README.md or
docs/results.md that its rows no longer give fails here."""

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
def test_the_latency_figures_in_bench_readme_and_results_are_the_rows(latency_report):
    latency, text = latency_report
    readme = (ROOT / "bench" / "README.md").read_text()
    results = (ROOT / "docs" / "results.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 4 + 1 + 3  # two headers, four settings, three search seeds
    for line in rows:
        assert line in readme, line
    study = latency.study_figures()
    lat, top = study["latency"], study["top1"]
    quoted = f"{abs(lat['mean']):.2f} ± {lat['se']:.2f} ms"
    assert quoted in readme and quoted in results
    assert f"p = {lat['p']:.3f}" in readme and f"p = {lat['p']:.3f}" in results
    assert f"{top['mean']:.2f} ± {top['se']:.2f} points" in readme and f"p = {top['p']:.2f}" in results
    assert f"{study['over_bound'][0]} of the {study['over_bound'][1]} latency-bound picks" in readme
    assert f"{study['drift']:.2f}x slower" in readme and f"({study['drift']:.2f}x)" in results
