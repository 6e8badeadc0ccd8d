"""The statistics the study's pages rest on (bench/search_evidence.py, ground_truth.py,
space_moves.py, kendall.py), each against an independent computation or a case worked by hand."""

from __future__ import annotations

import csv
import math
import sys

import numpy as np
import pytest
from scipy.stats import kendalltau

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import ground_truth  # noqa: E402
import kendall  # noqa: E402
import search_evidence  # noqa: E402
import space_moves  # noqa: E402


@pytest.mark.parametrize("sd, seeds", [(0.56, 10), (0.63, 12), (0.77, 17)])
def test_seeds_for_power_gives_the_pre_registered_numbers(sd, seeds):
    assert search_evidence.seeds_for_power(sd) == seeds  # bench/README.md's table


@pytest.mark.parametrize("sd, n, power", [(0.63, 12, 0.83), (0.63, 6, 0.52), (0.63, 20, 0.96), (0.0, 4, 1.0)])
def test_power_at_gives_the_plans_figures(sd, n, power):
    assert search_evidence.power_at(sd, n) == pytest.approx(power, abs=0.01)  # bench/README.md: 83, 52, 96 %


def test_the_sd_re_estimate_waits_for_seeds_3_to_8_and_only_grows_the_study():
    seeds = [str(s) for s in range(3, 9)]
    d1 = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]  # s3 - random: SD 0.548
    scores = {m: {s: 78.0 for s in seeds} for m in (*search_evidence.STUDY_METHODS, "searched", "band")}
    scores["s3"] = {s: 78.0 + d for s, d in zip(seeds, d1)}
    scores["autoformer_faithful"] = {s: 78.0 + d - 2.0 * d for s, d in zip(seeds, d1)}  # s3 - it: 2 d1, SD 1.095
    scores["searched"] = {s: 78.0 + 3.0 * d for s, d in zip(seeds, d1)}  # H3's SD 1.643
    sd = search_evidence.reestimate(scores)
    assert sd["sds"] == pytest.approx([math.sqrt(0.3), 2 * math.sqrt(0.3)])
    assert sd["pooled"] == pytest.approx(math.sqrt(2.5 * 0.3))
    assert sd["needed"] == search_evidence.seeds_for_power(sd["pooled"]) and sd["needed"] > 12
    assert sd["planned"] == min(20, sd["needed"])
    assert sd["h3_sd"] == pytest.approx(3 * math.sqrt(0.3))
    assert sd["h3_power"] < 0.5  # SD 1.64 over 20 seeds
    small = {**scores, "s3": {s: 78.0 + d / 4 for s, d in zip(seeds, d1)}, "autoformer_faithful": scores["random"]}
    sd = search_evidence.reestimate(small)  # SD 0.137: 3 seeds would do, the plan's 12 stay
    assert sd["needed"] < 12 and sd["planned"] == 12
    del scores["band"]["8"]  # seed 8 incomplete (its band archs): no re-estimate yet
    assert search_evidence.reestimate(scores) is None


def test_resampled_kendall_is_scipys_tau_b_on_the_expanded_sample():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=30), 1)  # rounded: ties, as top-1 on 1,000 images has
    y = np.round(x + rng.normal(size=30), 1)
    counts = kendall.resample_counts(30, draws=5, seed=1)
    assert counts[0].tolist() == [1] * 30 and (counts.sum(1) == 30).all()
    counts[:, 4] = 0  # an item left out
    for c, tau in zip(counts, kendall.kendall_resampled(x, y, counts)):
        idx = np.repeat(np.arange(30), c)
        assert tau == pytest.approx(kendalltau(x[idx], y[idx])[0], abs=1e-12)


def test_the_ceiling_is_what_a_noise_free_predictor_reaches():
    """Simulated library: true top-1 T, seeds T + noise. The predicted reliability and ceiling
    match the simulation's, and the seed-vs-seed agreement is lower than the ceiling."""
    rng = np.random.default_rng(1)
    truth_sd, noise_sd, n = 0.7, 0.5, 4000
    t = rng.normal(78, truth_sd, n)
    seeds = t[:, None] + rng.normal(0, noise_sd, (n, 2))
    by_arch = {str(i): {"0": seeds[i, 0], "1": seeds[i, 1]} for i in range(n)}
    rel = ground_truth.reliability(by_arch, resamples=20)
    assert rel["one"] == pytest.approx(truth_sd**2 / (truth_sd**2 + noise_sd**2), abs=0.03)
    assert rel["ceiling_one"] == pytest.approx(kendalltau(t, seeds[:, 0])[0], abs=0.02)
    assert rel["ceiling_two"] == pytest.approx(kendalltau(t, seeds.mean(1))[0], abs=0.02)
    assert kendalltau(seeds[:, 0], seeds[:, 1])[0] < rel["ceiling_one"] - 0.05


def test_no_ceiling_from_too_few_pairs():
    by_arch = {str(i): {"0": 77.0 + i / 10, "1": 77.1 + i / 10} for i in range(ground_truth.MIN_PAIRS - 1)}
    assert ground_truth.reliability(by_arch) is None


def _moves(path, seeds_moves):
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, space_moves.COLUMNS)
        w.writeheader()
        for seed, moves in seeds_moves.items():
            for (stage, dim), new in moves.items():
                w.writerow({"seed": seed, "iteration": 0, "stage": stage, "dimension": dim, "action": "",
                            "old": "[1, 2]", "new": new, "null_moves_mean": 0.1})


def test_the_space_move_decision_counts_inconsistent_moves_as_false(tmp_path, monkeypatch):
    monkeypatch.setattr(space_moves, "ROWS", tmp_path / "moves.csv")
    _moves(tmp_path / "moves.csv", {
        3: {(4, "embed_dim"): "[2, 3]", (1, "depth"): "[2, 3]", (2, "depth"): "[2, 3]"},
        4: {(4, "embed_dim"): "[2, 3]", (1, "depth"): "[1, 2]", (2, "depth"): "[0, 1]"},  # stage 2: the other way; stage 1: no move
        2: {(4, "embed_dim"): "[0, 1]", (1, "depth"): "[0, 1]", (2, "depth"): "[0, 1]"},  # a pilot seed: not counted
    })
    d = space_moves.decision()
    assert d["seeds"] == ["3", "4"] and d["consistent"] == [(4, "embed_dim")]
    assert d["false"] == 3  # stage 1 once, stage 2 twice (opposite directions)
    assert d["expected"] == pytest.approx(0.2)
    assert d["p"] == pytest.approx(1 - sum(math.exp(-0.2) * 0.2**k / math.factorial(k) for k in range(3)))
    assert not d["final"]


def test_the_count_without_the_majority_leaves_out_only_moves_to_where_most_seeds_moved(tmp_path, monkeypatch):
    """(4, embed_dim) moved to [2, 3] in 3 of 4 seeds and to [0, 1] in one: that one stays false;
    (1, depth) once; (2, depth) in 2 of 4, opposite ways (no majority)."""
    from scipy.stats import poisson

    monkeypatch.setattr(space_moves, "ROWS", tmp_path / "moves.csv")
    _moves(tmp_path / "moves.csv", {
        3: {(4, "embed_dim"): "[2, 3]", (1, "depth"): "[2, 3]", (2, "depth"): "[2, 3]"},
        4: {(4, "embed_dim"): "[2, 3]", (1, "depth"): "[1, 2]", (2, "depth"): "[0, 1]"},
        5: {(4, "embed_dim"): "[2, 3]", (1, "depth"): "[1, 2]", (2, "depth"): "[1, 2]"},
        6: {(4, "embed_dim"): "[0, 1]", (1, "depth"): "[1, 2]", (2, "depth"): "[1, 2]"},
    })
    d = space_moves.decision()
    assert d["false"] == 7 and space_moves.majority(d) == {(4, "embed_dim"): "[2, 3]"}
    assert space_moves.on_majority(d, space_moves.majority(d)) == 3
    line, = space_moves.without_majority(d)
    assert "stage 4 embed_dim to [2, 3], 3 of 4 seeds" in line
    assert f"4 move(s) against at most 0.40 expected; Poisson P(at least 4) <= {poisson.sf(3, 0.4):.2g}" in line
    # another rule's rows, read against these majorities: a dimension it moved the same way in every
    # seed was never counted as false, so nothing is taken off for it
    _moves(tmp_path / "confirmed.csv", {3: {(4, "embed_dim"): "[2, 3]", (1, "depth"): "[1, 2]"},
                                       4: {(4, "embed_dim"): "[2, 3]", (1, "depth"): "[1, 2]"}})
    c = space_moves.decision(tmp_path / "confirmed.csv")
    assert c["consistent"] == [(4, "embed_dim")] and c["false"] == 0
    assert space_moves.on_majority(c, space_moves.majority(d)) == 0
    assert "no move, against at most 0.20 expected" in space_moves.without_majority(c, d)[0]


def test_the_interim_state_shows_no_p_value():
    tests = [{"name": "H1", "a": "s3", "b": "random", "n": 3, "diff": 0.5, "se": 0.2, "lo": 0, "hi": 1,
              "t_p": 0.04, "w_p": 0.1, "holm_p": 0.1}]
    study = {"seeds": ["3", "4", "5"], "planned": 12, "final": False, "tests": tests}
    text = search_evidence.preregistered(study)
    assert "+0.50" in text and "0.04" not in text and "p-value" in text
    final = search_evidence.preregistered({**study, "final": True, "planned": 3,
                                           "h1_every": {**tests[0], "seeds": ["0", "3"]}})
    assert "0.04" in final
    assert "| supported (Wilcoxon p 0.1 disagrees) |" in final  # the plan's rule: the paired t decides
    assert search_evidence.verdict({**tests[0], "name": "C1", "t_p": 0.2, "w_p": 0.3}) == "no difference shown"


def test_the_confirmation_rule_estimate_counts_pairs_that_made_the_same_move():
    """Three seeds: (1, depth) moved the same way in seeds 3 and 4; (2, depth) in seed 5 only; (3,
    depth) moved in all three but not the same way. Pairs: (3,4) confirm (1, depth), nothing else."""
    def row(seed, new, old="[1, 2]"):
        return {"seed": seed, "old": old, "new": new}

    by_dim = {(1, "depth"): [row("3", "[2, 3]"), row("4", "[2, 3]"), row("5", "[1, 2]")],
              (2, "depth"): [row("3", "[1, 2]"), row("4", "[1, 2]"), row("5", "[0, 1]")],
              (3, "depth"): [row("3", "[2, 3]"), row("4", "[0, 1]"), row("5", "[2, 3]")]}
    c = space_moves.confirmed_by_pairs({"seeds": ["3", "4", "5"], "by_dim": by_dim, "consistent": []})
    assert c["pairs"] == 3
    assert c["share"] == {(1, "depth"): 1 / 3, (2, "depth"): 0.0, (3, "depth"): 1 / 3}
    assert c["false_single"] == pytest.approx(2 / 3 + 1 / 3 + 1)
    assert c["false_confirmed"] == pytest.approx(2 / 3)


def test_the_measured_confirmation_rule_is_reported_beside_the_single_rule_on_its_seeds(tmp_path, monkeypatch):
    """confirm_moves.csv (no iteration column) goes through the same decision; the single rule is
    restricted to the seeds the confirmation rule was measured on; partners follow the study order."""
    assert [space_moves.partner(s) for s in (3, 4, 13, 14)] == [4, 5, 14, 3]
    monkeypatch.setattr(space_moves, "ROWS", tmp_path / "moves.csv")
    monkeypatch.setattr(space_moves, "CONFIRM_ROWS", tmp_path / "confirm.csv")
    _moves(tmp_path / "moves.csv", {3: {(4, "embed_dim"): "[2, 3]", (1, "depth"): "[2, 3]"},
                                    4: {(4, "embed_dim"): "[2, 3]", (1, "depth"): "[1, 2]"},
                                    5: {(4, "embed_dim"): "[2, 3]", (1, "depth"): "[2, 3]"}})
    with (tmp_path / "confirm.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, space_moves.CONFIRM_COLUMNS)
        w.writeheader()
        for seed, new in ((3, "[2, 3]"), (4, "[1, 2]")):  # seed 4's embed_dim move not confirmed by seed 5
            w.writerow({"seed": seed, "confirm_seed": seed + 1, "stage": 4, "dimension": "embed_dim",
                        "action": "up", "old": "[1, 2]", "new": new, "null_moves_mean": 0.05})
            w.writerow({"seed": seed, "confirm_seed": seed + 1, "stage": 1, "dimension": "depth",
                        "action": "unconfirmed", "old": "[1, 2]", "new": "[1, 2]", "null_moves_mean": 0.05})
    c = space_moves.decision(space_moves.CONFIRM_ROWS)
    assert c["seeds"] == ["3", "4"] and c["false"] == 1 and c["expected"] == pytest.approx(0.1)
    single = space_moves.decision(space_moves.ROWS, c["seeds"])
    assert single["seeds"] == ["3", "4"] and single["false"] == 1 and single["consistent"] == [(4, "embed_dim")]
    text = "\n".join(space_moves.confirm_report())
    assert "3 (with 4), 4 (with 5)" in text and "confirmed rule 1, against 0.10" in text
    assert "single rule on the same seeds 1 against 0.20" in text
    assert "stage 1 depth 1 -> 0 of 2; stage 4 embed_dim 2 -> 1 of 2." in text


def test_the_confirmed_move_rule_keeps_only_moves_of_both_draws():
    """move_rule.py's third rule: every confirmed move is a move of the first draw's significant
    rule; a strong real effect survives confirmation; a rule not asked for is not computed."""
    import move_rule

    from s3.constraints import Constraints
    from s3.space import SearchSpace

    space = SearchSpace.from_yaml(ROOT / "conf" / "space" / "wide.yaml")
    constraints = Constraints(space, params={"min": 7.5e5, "max": 1e6}, num_classes=10)
    for seed in range(3):
        o = move_rule.trial(space, constraints, 160, 16, "stage_uniform", 3.0, (2, "depth"), 4.0, seed, 100)
        assert set(o["confirmed"]) <= set(o["significant"])
        assert (2, "depth", "up") in o["confirmed"]
    one = move_rule.trial(space, constraints, 160, 16, "stage_uniform", 3.0, None, 0.0, 0, 100, ("threshold",))
    assert set(one) == {"threshold"}
