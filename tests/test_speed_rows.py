"""The speed scripts' rows (bench/speed_rows.py): a rerun on the same machine and commit skips what
the rows hold, another commit measures again, and the page shows the latest row of each figure."""

from __future__ import annotations

import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import speed_rows  # noqa: E402


def test_a_rerun_skips_what_the_rows_hold_and_the_report_shows_the_latest(tmp_path, monkeypatch):
    rows = tmp_path / "speed.csv"
    monkeypatch.setattr(speed_rows, "commit", lambda: "aaaaaaa")
    first = speed_rows.Figures("supernet_overhead", rows)
    assert not first.held()
    first.add("training step ratio", 1.0412, "x", "<= 1.05")
    assert speed_rows.Figures("supernet_overhead", rows).held()
    assert not speed_rows.Figures("cost_model", rows).held()  # another script's rows do not count
    monkeypatch.setattr(speed_rows, "commit", lambda: "bbbbbbb")
    second = speed_rows.Figures("supernet_overhead", rows)
    assert not second.held()  # a new commit measures again
    second.add("training step ratio", 1.0213, "x", "<= 1.05")
    table = speed_rows.report(speed_rows.read_rows(rows))
    assert "| training step ratio | 1.02 x | <= 1.05 |" in table
    assert "1.04 x" not in table and "commit bbbbbbb" in table


def test_figures_keep_three_significant_digits_without_an_exponent():
    assert [speed_rows.significant(v) for v in (6450.3, 59_912.0, 0.9716, 1.0412)] == ["6450", "59900", "0.972", "1.04"]
