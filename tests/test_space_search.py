"""The space search: E-T Error, the pinned pool, shifts, the move rule and its significance test
(under noise and under real effects), the iteration supernets, and what search.py writes for
search=space and search=et_error and for the ImageNet and demo presets."""

import json
import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from s3.constraints import Constraints
from s3.search.configs import search_config
from s3.search.et_error import et_error, fit_dimensions
from s3.search.pool import SUBSPACES, PooledArch, sample_pool
from s3.search.shift import MoveRule, confirmed, evolve_space, keep_feasible, shifted
from s3.search.significance import change_tests, holm, moves_under_null
from s3.space import Arch, SearchSpace
from tests.conftest import ROOT, SPACES
from tests.helpers import FAST, ONE_SUPERNET, compose_cfg
from tests.helpers import csv_rows as _rows
from tests.helpers import png_size as _png_size
from tests.helpers import run_search as _search


# -- E-T Error and space evolution ---------------------------------------------------------------------
def test_et_error_of_a_hand_made_table(tiny_space):
    assert et_error([40.0, 10.0, 30.0, 20.0], top_k=2).to_dict() == {"q_e": 25.0, "q_t": 15.0, "n": 4, "k": 2, "q": 20.0}
    # stage-0 depth 1 -> errors 30, 50, 40 ; depth 2 -> errors 10, 20 (K=2 of N=5 scales to 1 per choice)
    base = tiny_space.smallest()
    deep = base.replace_stage(0, depth=2, mlp_ratio=(2.0, 2.0), num_heads=(1, 1), window_size=(4, 4))
    archs = [base, base.replace_stage(1, embed_dim=96), base.replace_stage(2, embed_dim=128), deep,
             deep.replace_stage(1, embed_dim=96)]
    pool = [PooledArch(a, frozenset()) for a in archs]
    fit = next(f for f in fit_dimensions(tiny_space, pool, [30, 50, 40, 10, 20], top_k=2)
               if (f.stage, f.dimension) == (0, "depth"))
    d1, d2 = fit.per_choice
    assert (d1.q_e, d1.q_t, d1.k, d1.q) == (40.0, 30.0, 1, 35.0)
    assert (d2.q_e, d2.q_t, d2.k, d2.q) == (15.0, 10.0, 1, 12.5)
    assert fit.slope == pytest.approx(-22.5) and fit.change == pytest.approx(-22.5)


def _moves(space: SearchSpace, error, subspace: str = "pinned", n: int = 1000, noise: float = 0.0,
           rule: MoveRule | None = None) -> list[tuple]:
    """What one space-evolution step moves when the top-1 error is the closed form `error(arch)`
    (plus Gaussian noise of sd `noise` per arch)."""
    pool = sample_pool(space, Constraints(space), n, "synthetic", subspace)
    assert len(pool) == n
    rng = np.random.default_rng(0)
    errors = [error(m.arch) + noise * rng.standard_normal() for m in pool]
    fits = fit_dimensions(space, pool, errors, top_k=50)
    tests = change_tests(space, pool, errors, 50, resamples=200, seed=0)
    new, decisions = evolve_space(space, fits, rule or MoveRule(), tests)
    assert {d.action for d in decisions if not d.moved} <= {"below_threshold", "not_significant", "single_choice"}
    return [(d.stage, d.dimension, d.action, d.new) for d in decisions if d.moved]


def mean(values) -> float:
    return sum(values) / len(values)


@pytest.mark.parametrize("subspace", SUBSPACES)
def test_synthetic_fitness_moves_stage3_depth_up_and_nothing_else(tiny_space, subspace):
    # deeper stage 3 -> lower error, nothing else matters
    assert _moves(tiny_space, lambda a: 50.0 - 3.0 * a.depths[2], subspace) == [(2, "depth", "up", (2, 3, 4))]


S3_S = SearchSpace.from_yaml(SPACES / "s3_s.yaml")  # stage 3: depth 14-22, ratio 3.5-4.5, heads 10-14, window 7/14


@pytest.mark.parametrize("subspace", SUBSPACES)
@pytest.mark.parametrize("error, moved", [
    (lambda a: 50.0 - 4.0 * mean(a.mlp_ratios[2]), (2, "mlp_ratio", "up", (4.0, 4.5, 5.0))),
    (lambda a: 50.0 - 0.5 * mean(a.num_heads[2]), (2, "num_heads", "up", (12, 14, 16))),
    (lambda a: 40.0 + 0.2 * mean(a.window_sizes[2]), (2, "window_size", "down", (2, 7))),
], ids=["mlp_ratio", "num_heads", "window_size"])
def test_synthetic_fitness_moves_a_deep_stages_block_dimension_and_nothing_else(error, moved, subspace):
    """A block dimension of an 18-block stage moves (counting an arch under every value its blocks
    use, the pre-pinning grouping, gave every choice the same E-T Error here)."""
    assert _moves(S3_S, error, subspace) == [moved]


WIDE = SearchSpace.from_yaml(SPACES / "wide.yaml")


BAND = {"min": 7.5e5, "max": 1.0e6}


INITIAL_T = SearchSpace.from_yaml(SPACES / "initial_t.yaml")


def _null_moves(space, params, n, k, noise, pools, rule, subspace="pinned", resamples=300) -> float:
    """Mean dimensions moved over `pools` pools whose errors are pure noise (no dimension matters)."""
    constraints = Constraints(space, params=params, num_classes=10 if space is WIDE else 1000)
    moved = []
    for seed in range(pools):
        pool = sample_pool(space, constraints, n, f"null:{seed}", subspace)
        errors = list(20 + noise * np.random.default_rng(seed).standard_normal(len(pool)))
        fits = fit_dimensions(space, pool, errors, k)
        tests = change_tests(space, pool, errors, k, resamples, seed)
        moved.append(sum(d.moved for d in evolve_space(space, fits, rule, tests)[1]))
    return float(np.mean(moved))


@pytest.mark.parametrize("noise", [1.5, 3.0])
def test_pure_noise_moves_at_most_one_dimension_in_twenty_at_the_demos_pool(noise):
    """The demo's pool (space=wide, constraints=band_1m, N=160, K=16, stage_uniform): the paper's
    plain threshold rule moves several dimensions on noise, the significant rule almost none."""
    plain = _null_moves(WIDE, BAND, 160, 16, noise, 8, MoveRule("threshold"), "stage_uniform")
    significant = _null_moves(WIDE, BAND, 160, 16, noise, 8, MoveRule(), "stage_uniform")
    assert significant <= 1.0 < plain, (significant, plain)


def test_pure_noise_moves_at_most_half_a_dimension_at_the_imagenet_presets_pool():
    """experiment=space_t: initial_t in the S3-T band, N=1000, K=50."""
    band = {"min": 20e6, "max": 30e6}
    assert _null_moves(INITIAL_T, band, 1000, 50, 3.0, 3, MoveRule(), resamples=200) <= 0.5


@pytest.mark.parametrize("target", [(2, "depth"), (2, "mlp_ratio")])
def test_a_real_effect_under_noise_moves_exactly_its_dimension(target):
    """6 error points across stage 3's range, per-arch noise 1.5 points, N=1000 (S3-S's space)."""
    choices = S3_S.stages[target[0]].choices(target[1])

    def error(a):
        return 40.0 - 6.0 * (mean(a.values(*target)) - min(choices)) / (max(choices) - min(choices))

    assert [m[:3] for m in _moves(S3_S, error, noise=1.5)] == [(*target, "up")]


def test_change_tests_match_the_fit_and_holm_controls_the_family():
    constraints = Constraints(WIDE, params=BAND, num_classes=10)
    pool = sample_pool(WIDE, constraints, 200, "tests", "pinned")
    errors = list(20 + 2.0 * np.random.default_rng(0).standard_normal(len(pool)))
    fits = {(f.stage, f.dimension): f for f in fit_dimensions(WIDE, pool, errors, 20) if f.slope is not None}
    tests = change_tests(WIDE, pool, errors, 20, 500, seed=0)
    assert {(t.stage, t.dimension) for t in tests} == set(fits)
    for t in tests:  # the vectorised point estimate is the fit's, the counts are the groups'
        f = fits[(t.stage, t.dimension)]
        assert t.change == pytest.approx(f.change, abs=1e-9)
        assert list(t.counts) == [e.n if e else 0 for e in f.per_choice]
        assert t.se > 0 and t.ci[0] < t.ci[1] and 0 <= t.p <= t.p_adjusted <= 1
    assert list(holm(np.array([0.01, 0.04, 0.03, 0.5]))) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_choices_the_pool_lacks_are_nan_without_a_warning():
    """A pool where stage 1 keeps one depth: its other depths have no E-T Error and the dimension no
    change; the tests and the null say so with NaN and p = 1, and print no numpy warning."""
    constraints = Constraints(WIDE, params=BAND, num_classes=10)
    pool = [p for p in sample_pool(WIDE, constraints, 200, "tests", "stage_uniform") if p.arch.depths[0] == 1]
    errors = list(20 + 3.0 * np.random.default_rng(1).standard_normal(len(pool)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tests = {(t.stage, t.dimension): t for t in change_tests(WIDE, pool, errors, 16, 100)}
        keys = list(tests)
        moves_under_null(WIDE, pool, errors, 16, {"significant": MoveRule("significant").deciding(WIDE, keys)},
                         permutations=5, resamples=100)
    depth = tests[(0, "depth")]  # stages count from 0 here
    assert depth.counts[1:] == (0, 0) and depth.counts[0] == len(pool)
    assert np.isnan(depth.change) and np.isnan(depth.choice_se[1:]).all() and depth.p == 1.0


def test_the_permutation_null_agrees_with_a_direct_simulation():
    """On one pool: the moves the reported null expects (errors shuffled across its archs) against
    the moves of fresh pure-noise errors on the same archs, for both rules, within their errors."""
    constraints = Constraints(WIDE, params=BAND, num_classes=10)
    pool = sample_pool(WIDE, constraints, 100, "null", "pinned")
    errors = list(20 + 3.0 * np.random.default_rng(1).standard_normal(len(pool)))
    keys = [(t.stage, t.dimension) for t in change_tests(WIDE, pool, errors, 10, 50)]
    rules = {r: MoveRule(r).deciding(WIDE, keys) for r in ("threshold", "significant")}
    null = moves_under_null(WIDE, pool, errors, 10, rules, permutations=60, resamples=200, seed=3)
    direct = {r: [] for r in rules}
    for seed in range(60):
        fresh = list(20 + 3.0 * np.random.default_rng(100 + seed).standard_normal(len(pool)))
        tests = change_tests(WIDE, pool, fresh, 10, 200, seed)
        fits = fit_dimensions(WIDE, pool, fresh, 10)
        for r in rules:
            direct[r].append(sum(d.moved for d in evolve_space(WIDE, fits, MoveRule(r), tests)[1]))
    for r in rules:
        a, b = null[r], np.array(direct[r])
        se = np.hypot(a.std(ddof=1) / len(a) ** 0.5, b.std(ddof=1) / len(b) ** 0.5)
        assert abs(a.mean() - b.mean()) <= 3 * se + 0.05, (r, a.mean(), b.mean(), se)
    assert null["threshold"].mean() > 2 and null["significant"].mean() < 0.5


def test_a_move_stands_only_where_a_second_supernet_makes_it_too():
    """search.confirm: the same pool's errors on two supernets; a move stands where both make it
    (the same way), and the null of the confirmed rule counts only such agreements."""
    constraints = Constraints(WIDE, params=BAND, num_classes=10)
    pool = sample_pool(WIDE, constraints, 160, "confirm", "stage_uniform")
    rng = np.random.default_rng(0)
    shared = 20 + 3.0 * rng.standard_normal(len(pool))  # what the archs are (no dimension matters)
    first, second = (list(shared + 0.5 * rng.standard_normal(len(pool))) for _ in range(2))
    rule = MoveRule("threshold", 0.5)
    own = [evolve_space(WIDE, fit_dimensions(WIDE, pool, e, 16), rule)[1] for e in (first, second)]
    both = confirmed(*own)
    moves = [{(d.stage, d.dimension): d.new for d in ds if d.moved} for ds in own]
    assert {(d.stage, d.dimension): d.new for d in both if d.moved} == {
        k: v for k, v in moves[0].items() if moves[1].get(k) == v}
    assert {(d.stage, d.dimension) for d in both if d.action == "unconfirmed"} == {
        k for k, v in moves[0].items() if moves[1].get(k) != v}
    assert 0 < sum(d.moved for d in both) < len(moves[0])  # the pools agree in part: some moves fall
    keys = [(t.stage, t.dimension) for t in change_tests(WIDE, pool, first, 16, 50)]
    rules = {r: MoveRule(r).deciding(WIDE, keys) for r in ("threshold", "significant")}
    alone = moves_under_null(WIDE, pool, first, 16, rules, permutations=40, resamples=100, seed=5)
    twice = moves_under_null(WIDE, pool, [first, first], 16, rules, permutations=40, resamples=100, seed=5)
    paired = moves_under_null(WIDE, pool, [first, second], 16, rules, permutations=40, resamples=100, seed=5)
    for r in rules:  # one supernet scored twice is one supernet; a second, noisier one confirms fewer moves
        assert list(twice[r]) == list(alone[r])
        assert (paired[r] <= alone[r]).all()
    assert paired["threshold"].sum() < alone["threshold"].sum()
    # one pass, one rule on both supernets and one on the first alone (the space search's null): the same counts
    one_pass = moves_under_null(WIDE, pool, [first, second], 16, {"both": rules["significant"], "first": rules["threshold"]},
                                permutations=40, resamples=100, seed=5, first_row_only={"first"})
    assert list(one_pass["both"]) == list(paired["significant"]) and list(one_pass["first"]) == list(alone["threshold"])


def test_one_infeasible_shift_is_reverted_alone(tiny_space):
    """Two real effects (stage 4 wider, stage 1 smaller windows); the params cap admits the window
    move but not a wider stage 4: only the embed-dim move is reverted."""
    def error(a):
        return 50.0 - 0.05 * a.embed_dims[3] + 2.0 * mean(a.window_sizes[0])

    pool = sample_pool(tiny_space, Constraints(tiny_space), 600, "two", "pinned")
    errors = [error(m.arch) for m in pool]
    fits = fit_dimensions(tiny_space, pool, errors, 30)
    _, decisions = evolve_space(tiny_space, fits, MoveRule(), change_tests(tiny_space, pool, errors, 30, 200))
    moved = {(d.stage, d.dimension) for d in decisions if d.moved}
    assert moved == {(3, "embed_dim"), (0, "window_size")}
    both = tiny_space.replace(3, "embed_dim", shifted(tiny_space, 3, "embed_dim", +1))
    both = both.replace(0, "window_size", shifted(tiny_space, 0, "window_size", -1))  # smaller bias tables
    cap = Constraints(tiny_space, params={"max": Constraints(tiny_space).cost(both.smallest())["params"] - 1})

    def feasible(space):
        try:
            cap.check_feasible(space)
            return True
        except ValueError:
            return False

    new, kept = keep_feasible(tiny_space, decisions, feasible)
    assert {(d.stage, d.dimension): d.action for d in kept if d.action in ("up", "down", "infeasible")} == {
        (3, "embed_dim"): "infeasible", (0, "window_size"): "down"}
    assert new == tiny_space.replace(0, "window_size", shifted(tiny_space, 0, "window_size", -1))


def test_bad_move_rule_knobs_are_refused():
    with pytest.raises(ValueError, match=r"search.move_rule=bonferroni: allowed \['significant', 'threshold'\]"):
        MoveRule("bonferroni")
    with pytest.raises(ValueError, match=r"search.alpha=1.5: the family-wise error of one iteration, in \(0, 1\)"):
        MoveRule(alpha=1.5)


def test_pinned_pool_pins_one_block_dimension_per_stage_in_turn(tiny_space):
    pool = sample_pool(tiny_space, Constraints(tiny_space), 280, "pins")
    for m in pool:
        assert sorted(s for s, _ in m.pinned) == [0, 1, 2, 3]
        for s, dim in m.pinned:
            assert len(set(m.arch.values(s, dim))) == 1
    # stage 4 has 3 ratios + 2 heads (its single window is never pinned): every pair 280 / 5 = 56 times
    counts = {}
    for m in pool:
        ((dim,),) = [[d for s, d in m.pinned if s == 3]]
        counts[(dim, m.arch.values(3, dim)[0])] = counts.get((dim, m.arch.values(3, dim)[0]), 0) + 1
    assert counts == {("mlp_ratio", 2.0): 56, ("mlp_ratio", 3.0): 56, ("mlp_ratio", 4.0): 56,
                      ("num_heads", 2): 56, ("num_heads", 4): 56}


def test_pool_respects_constraints_and_rejects_unknown_subspaces(tiny_space):
    constraints = Constraints(tiny_space, params={"max": 6e5})
    pool = sample_pool(tiny_space, constraints, 50, "budget", "stage_uniform")
    assert len(pool) == 50 and all(constraints.satisfied(m.arch) for m in pool)
    assert all(len(set(m.arch.values(s, d))) == 1 for m in pool for s, d in m.pinned)
    with pytest.raises(ValueError, match=r"search.subspace=each: allowed \['pinned', 'stage_uniform'\]"):
        sample_pool(tiny_space, constraints, 5, "x", "each")


def test_shifts_keep_count_and_legal_bounds(tiny_space):
    assert shifted(tiny_space, 0, "depth", -1) is None  # [1, 2] cannot go below 1
    assert shifted(tiny_space, 0, "embed_dim", +1) == (48, 64)
    assert shifted(tiny_space, 0, "mlp_ratio", -1) == (1.0, 2.0, 3.0)
    assert shifted(tiny_space, 1, "num_heads", -1) is None  # heads >= 1
    assert shifted(tiny_space, 0, "window_size", +1) == (8, 16)  # along the legal ladder 1, 2, 4, 8, 16
    assert shifted(tiny_space, 2, "window_size", +1) is None  # [2, 4] at grid 4: 4 is already global
    assert shifted(tiny_space, 2, "window_size", -1) == (1, 2)
    assert shifted(tiny_space, 3, "window_size", -1) is None  # a single choice never moves


# -- the supernets of the iterations -------------------------------------------------------------------
def test_next_iteration_supernet_inherits_the_previous_one(tmp_path, supernet_ckpt, tiny_space):
    from s3.models import load_supernet
    from s3.train import train_supernet

    shifted_space = tiny_space.replace(2, "depth", (2, 3, 4)).replace(0, "embed_dim", (48, 64))
    cfg = compose_cfg([*FAST, "search=space"], tmp_path, config_name="search")
    before = OmegaConf.to_yaml(cfg)
    new = train_supernet(cfg, space=shifted_space, out_dir=tmp_path / "iter1", epochs=0, init_from=supernet_ckpt,
                         warmup_epochs=0.25).eval()
    assert OmegaConf.to_yaml(cfg) == before  # the search's config is not touched
    trained_with = OmegaConf.load(tmp_path / "iter1" / "checkpoints" / "config.yaml")
    assert trained_with.model.optim.warmup_epochs == 0.25 and cfg.model.optim.warmup_epochs == 0.5
    old = load_supernet(supernet_ckpt).eval()
    arch = Arch.create([1, 1, 2, 1], [48, 64, 96, 128], [2.0, 3.0, [4.0, 2.0], 2.0], [1, 2, [2, 3], 2], [8, 4, 2, 2])
    assert arch in shifted_space and arch in old.space
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(new(x, arch), old(x, arch), atol=1e-5, rtol=0)
    assert len(new.layers[2].blocks) == 4 and len(old.layers[2].blocks) == 3  # the 4th block is new


def test_a_supernet_of_a_subspace_starts_from_the_one_shot_supernet(tmp_path, supernet_ckpt):
    """Few-shot splitting: train.py init_from= a supernet, on a subspace with one stage's depth fixed."""
    from s3.models import load_supernet
    from s3.train import build_module

    cfg = compose_cfg([*FAST, "space.stages.2.depth=[3]", f"init_from={supernet_ckpt}"], tmp_path)
    sub = build_module(cfg).model.eval()
    one_shot = load_supernet(supernet_ckpt).eval()
    assert sub.space.stages[2].depth == (3,) and one_shot.space.stages[2].depth != (3,)
    x = torch.randn(2, 3, 32, 32)
    for seed in range(3):
        arch = sub.space.sample(torch.Generator().manual_seed(seed))
        with torch.no_grad():
            torch.testing.assert_close(sub(x, arch), one_shot(x, arch), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"arch=.*: only for one architecture"):
        build_module(compose_cfg([*FAST, f"arch={supernet_ckpt}"], tmp_path))


# -- search.py end to end ------------------------------------------------------------------------------
def test_space_search_writes_iterations_and_a_loadable_space(tmp_path):
    out = tmp_path / "space"
    result = _search(out, "search=space", "search.iterations=2", "search.samples=12", "search.top_k=3",
                     "search.threshold=0.0", ONE_SUPERNET)
    assert result["iterations"] == len(result["et_error"]) == 2
    searched = SearchSpace.from_yaml(out / "conf" / "space" / "searched.yaml")
    state = json.loads((out / "search_state.json").read_text())["iterations"]
    assert SearchSpace.from_dict(state[-1]["next_space"]) == searched
    assert SearchSpace.from_yaml(out / "iter0" / "space.yaml") == SearchSpace.from_yaml(ROOT / "conf/space/tiny.yaml")
    rows = _rows(out / "iter0" / "et_error.csv")
    assert {r["dimension"] for r in rows} == {"depth", "embed_dim", "mlp_ratio", "num_heads", "window_size"}
    for name in ("et_error.png", "iter0/dimensions.png"):
        assert _png_size(out / name)[0] > 600, name
    assert torch.load(out / "iter0" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    record = json.loads((out / "iter0" / "et_error.json").read_text())
    # under the null (the errors shuffled across the archs) the significant rule, family-wise at 0.05, expects
    # well under one move; the plain rule at threshold 0 moves every dimension whose fit is not flat
    assert record["null"]["permutations"] == 100 and record["null"]["rule_mean"] <= 1.0
    assert record["null"]["threshold_rule_mean"] > 5
    tested = [d for d in record["decisions"] if d["slope"] is not None]
    assert tested and all(d["ci_low"] <= d["change"] <= d["ci_high"] + 1e-9 and sum(d["counts"]) <= 12
                          for d in tested)
    from scipy.stats import norm

    testable = [d for d in tested if d["se"] > 0 and d["p"] < 1]  # (too few archs per choice: p = 1, not tested)
    assert len(testable) >= 3
    for d in testable:  # each p is the z-test of the change and SE it reports, Holm-adjusted upwards
        assert d["p"] == pytest.approx(2 * norm.sf(abs(d["change"]) / d["se"]), rel=1e-6, abs=1e-12)
        assert d["p"] <= d["p_adjusted"] <= 1
    assert all(d["reason"] and d["action"] in ("up", "down", "below_threshold", "not_significant", "at_bound",
                                                "single_choice", "infeasible") for d in record["decisions"])
    assert {"se", "p_adjusted", "reason", "choice_se"} <= set(_rows(out / "iter0" / "et_error.csv")[0])
    assert "expected under noise" in (out / "report.md").read_text()
    # train.py composes the searched space through hydra.searchpath
    cfg = compose_cfg([f"hydra.searchpath=[file://{out / 'conf'}]", "space=searched"], tmp_path / "t")
    assert SearchSpace.from_dict(cfg.space) == searched


def test_space_search_confirms_each_move_on_a_second_supernet(tmp_path, caplog, monkeypatch):
    """The default (search.confirm): iter<t>/confirm trains a second supernet (its own seed, the same
    space and epochs) and scores the same pool; the iteration moves only what both moved the same
    way, and the next iteration fine-tunes each supernet from its own. A search stopped inside the
    second supernet's training continues from its last step checkpoint to the same search."""
    from s3.lit.supernet import SupernetModule
    from s3.search.space_search import CONFIRM_SEED

    args = ["search=space", "search.iterations=2", "search.samples=12", "search.top_k=3", "search.move_rule=threshold",
            "search.threshold=0.0", "search.null_permutations=20", "callbacks.step_checkpoint.every_n_train_steps=5"]
    out = tmp_path / "space"
    with caplog.at_level("INFO", logger="s3.search.space_search"):
        full = _search(out, *args)
    state = json.loads((out / "search_state.json").read_text())["iterations"]
    first, second = (torch.load(out / "iter0" / sub / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
                     for sub in ("", "confirm"))
    assert not all(torch.equal(first[k], second[k]) for k in first)  # another seed: another supernet
    seeds = [OmegaConf.load(out / "iter0" / sub / "checkpoints" / "config.yaml").seed for sub in ("", "confirm")]
    assert seeds[1] == seeds[0] + CONFIRM_SEED
    assert sorted(r["arch"] for r in _rows(out / "iter0" / "archs.csv")) == sorted(
        r["arch"] for r in _rows(out / "iter0" / "confirm" / "archs.csv"))  # the same pool on both
    it = state[0]
    other = {(d["stage"], d["dimension"]): d for d in it["confirm"]["decisions"]}
    kept = [d for d in it["decisions"] if d["new"] != d["old"]]
    dropped = [d for d in it["decisions"] if d["action"] == "unconfirmed"]
    assert kept and dropped  # two tiny supernets agree on some moves, not all
    assert all(other[(d["stage"], d["dimension"])]["new"] == d["new"] for d in kept)
    assert it["moved"] == len(kept) and it["move_rule"]["confirm"] is True
    assert (out / "iter1" / "confirm" / "checkpoints" / "last.ckpt").is_file()
    assert "dimension(s) moved; the second supernet alone would move" in caplog.text
    assert "not confirmed by the second supernet: stage" in (out / "report.md").read_text()
    assert _png_size(out / "iter0" / "confirm" / "dimensions.png")[0] > 600

    steps = {"n": 0, "stop_at": 7}
    training_step = SupernetModule.training_step

    def stepped(self, batch, batch_idx):
        if "/iter0/confirm/" in str(self.trainer.checkpoint_callback.dirpath):
            steps["n"] += 1
            if steps["n"] == steps["stop_at"]:
                raise KeyboardInterrupt  # a stop in the middle of the second supernet's training
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(SupernetModule, "training_step", stepped)
    part = tmp_path / "part"
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns the interrupt into exit 1
        _search(part, *args)
    assert (part / "iter0" / "checkpoints" / "last.ckpt").is_file() and not (part / "search_state.json").exists()
    steps["n"], steps["stop_at"] = 0, None
    assert _search(part, *args) == {**full, "searched_space": str(part / "searched_space.yaml")}
    assert steps["n"] == 5  # the second supernet went on from step 5's checkpoint, not from its start
    assert json.loads((part / "search_state.json").read_text())["iterations"] == state
    for name in ("iter0/archs.csv", "iter0/confirm/archs.csv", "iter1/confirm/archs.csv"):
        assert _rows(part / name) == _rows(out / name), name


def test_the_e_t_error_of_a_space_on_its_supernet_is_the_pools_by_hand(tmp_path, supernet_ckpt):
    """search=et_error scores a space on a trained supernet: Q_e / Q_t of the archs it wrote,
    recomputed from their search-split top-1."""
    result = _search(tmp_path / "score", "search=et_error", f"supernet={supernet_ckpt}", "search.samples=12",
                     "search.top_k=3")
    errors = [100.0 - float(r["top1"]) for r in _rows(tmp_path / "score" / "archs.csv")]
    assert len(errors) == 12 and result["et_error"] == et_error(errors, 3).to_dict()


# -- presets -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["t", "s", "b"])
def test_imagenet_space_search_starts_from_a_wide_initial_space(size, tmp_path):
    from s3.cost import count_params
    from s3.search.inputs import build_constraints
    from tests.conftest import released_arch

    cfg = compose_cfg([f"experiment=space_{size}"], tmp_path, config_name="search")
    space, released = SearchSpace.from_dict(cfg.space), released_arch(f"S3-{size.upper()}")
    final = SearchSpace.from_dict(compose_cfg([f"experiment=supernet_{size}"], tmp_path).space)
    assert space.contains(released) and final.contains(released) and space != final
    for i, stage in enumerate(space.stages):
        for dim in ("depth", "embed_dim", "mlp_ratio", "num_heads", "window_size"):
            # grid 7 has two legal windows, 1 and global
            assert len(stage.choices(dim)) >= (2 if (i, dim) == (3, "window_size") else 3), (i, dim)
        assert released.embed_dims[i] == max(stage.embed_dim) and released.num_heads[i][0] == max(stage.num_heads)
        assert min(stage.mlp_ratio) < 4.0 == max(stage.mlp_ratio) and min(stage.window_size) < released.window_sizes[i][0]
    assert space.smallest().depths[:2] == (1, 1) and min(space.stages[2].depth) < released.depths[2]
    lo, hi = cfg.constraints.params.min, cfg.constraints.params.max
    assert lo <= count_params(released) <= hi and count_params(space.largest()) > 1.25 * hi
    assert count_params(space.smallest()) < lo / 4
    pool = sample_pool(space, build_constraints(cfg, space), 1000, "preset", cfg.search.subspace)
    assert len(pool) == 1000  # the budget band holds a full pool
    s = cfg.search
    assert (s.train_epochs, s.finetune_epochs, s.finetune_warmup_epochs) == (500, 50, 5)
    assert search_config(s).kind == "space"
    assert cfg.data._target_.endswith("ImageNetDataModule") and cfg.trainer.devices == 8 and cfg.data.repeated_aug == 3


def test_embedded_initial_space_is_wide_and_its_budget_band_forces_trade_offs(tmp_path):
    from s3.cost import count_params
    from s3.search.inputs import build_constraints

    cfg = compose_cfg(["search=space", "space=wide", "constraints=band_1m"], tmp_path, config_name="search")
    space = SearchSpace.from_dict(cfg.space)
    lo, hi = (count_params(a, img_size=32, patch_size=2, num_classes=10) for a in (space.smallest(), space.largest()))
    assert hi >= 4 * lo  # the issue asks for a 4x params range; the band sits inside it
    band = cfg.constraints.params
    assert lo < band.min < band.max < hi
    for i, stage in enumerate(space.stages):
        assert min(stage.window_size) == 1 and min(stage.depth) == 1 and min(stage.mlp_ratio) == 1.0, i
    pool = sample_pool(space, build_constraints(cfg, space), 100, "demo", cfg.search.subspace)
    assert len(pool) == 100  # make demo's N fits in the band
