import csv
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from s3.constraints import Constraints
from s3.models import Supernet
from s3.search.configs import search_config
from s3.search.et_error import et_error, fit_dimensions
from s3.search.evaluator import CachedSplit, CandidateEvaluator
from s3.search.evolution import Evolution, EvolutionConfig, crossover, mutate
from s3.search.pareto import non_dominated_fronts, nsga2_select
from s3.search.pool import SUBSPACES, PooledArch, sample_pool
from s3.search.session import SearchSession
from s3.search.shift import MoveRule, evolve_space, keep_feasible, shifted
from s3.search.significance import change_tests, holm, moves_under_null
from s3.space import DIMENSIONS, Arch, SearchSpace
from tests.conftest import ROOT, SPACES
from tests.helpers import FAST, compose_cfg, user_error

SMALL = ["search.population=6", "search.generations=3", "search.parents=3", "search.mutations=2",
         "search.crossovers=2", "search.top_k=2"]


@pytest.fixture
def supernet_ckpt(supernet_run) -> Path:
    """The tiny supernet (tests/conftest.py), trained once on a few hundred Fashion-MNIST images."""
    return supernet_run / "checkpoints" / "last.ckpt"


def _search(out: Path, *overrides: str) -> dict:
    cfg = compose_cfg([*FAST, *overrides], out, config_name="search")
    return SearchSession.open(cfg).run()


class SyntheticEvaluator(CandidateEvaluator):
    """A fitness known in closed form: the search logic is tested without a supernet."""

    def __init__(self, constraints: Constraints, fitness, fabric=None):
        self.constraints, self.fitness, self._cache = constraints, fitness, {}
        self.fabric, self.device = fabric, torch.device("cpu")

    def measure(self, arch: Arch, split=None) -> dict:
        return {"top1": self.fitness(arch), "loss": 0.0}


# -- E-T Error and space evolution --------------------------------------------------------------------
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


# -- evolution --------------------------------------------------------------------------------------------
def test_mutation_and_crossover_stay_in_the_space(tiny_space):
    rng = random.Random(1)
    mixed = 0
    for _ in range(300):
        a, b = tiny_space.sample(rng), tiny_space.sample(rng)  # of any depths
        assert tiny_space.contains(mutate(a, tiny_space, rng, 0.2, 0.4))
        child = crossover(a, b, rng)
        assert tiny_space.contains(child)
        for s in range(4):  # every stage whole from one parent
            assert any(all(child.values(s, d) == p.values(s, d) for d in DIMENSIONS) for p in (a, b)), (s, child, a, b)
        mixed += a.depths != b.depths and child not in (a, b)
    assert mixed > 100  # parents of different depths cross
    assert mutate(a, tiny_space, rng, 0.0, 0.0) == a


def test_crossover_fills_its_slots_every_generation_within_the_constraints(tiny_space):
    constraints = Constraints(tiny_space, params={"min": 4e5, "max": 8e5}, num_classes=10)
    evo = _evolution(tiny_space, constraints, generations=6)
    generations = []
    evo.run(on_generation_end=lambda e: generations.append((dict(e.made), list(e.candidates))))
    for made, candidates in generations[:-1]:
        assert made["children"] == 8 and made["mutants"] == 8 and made["random"] == 4, made
        assert all(tiny_space.contains(a) and constraints.satisfied(a) for a in candidates)
    assert [h["children"] for h in evo.history] == [0] + [8] * 5  # generation 0 is random


def _evolution(space, constraints, seed=0, **knobs) -> Evolution:
    fitness = lambda a: float(sum(a.depths) + sum(a.embed_dims) / 100)  # noqa: E731
    return Evolution(space, constraints, SyntheticEvaluator(constraints, fitness),
                     EvolutionConfig(**{"population": 20, "generations": 5, "parents": 5, "mutations": 8,
                                        "crossovers": 8, **knobs}), seed=seed)


def test_evolution_candidates_are_new_valid_and_within_constraints(tiny_space):
    constraints = Constraints(tiny_space, params={"min": 4e5, "max": 8e5}, num_classes=10)
    evo = _evolution(tiny_space, constraints)
    seen = []
    evo.run(on_generation_end=lambda e: seen.append(list(e.candidates)))
    for gen in seen[:-1]:
        assert len(gen) == 20 and len(set(gen)) == 20
        for a in gen:
            assert tiny_space.contains(a) and constraints.satisfied(a)
    assert len(evo.evaluator) == 20 * 5  # no arch evaluated twice
    best = evo.ranked()[0]
    assert best["top1"] == max(r["top1"] for r in evo.evaluator.records())
    assert best["params"] <= 8e5 and best["params"] >= 4e5


def test_evolution_resume_equals_uninterrupted(tiny_space):
    constraints = Constraints(tiny_space, params={"max": 8e5}, num_classes=10)
    full = _evolution(tiny_space, constraints, seed=3)
    full.run()

    class Stop(Exception):
        pass

    saved = {}

    def interrupt(e):
        saved["state"] = json.loads(json.dumps(e.state_dict()))  # what search_state.json holds
        if e.generation == 2:
            raise Stop

    first = _evolution(tiny_space, constraints, seed=3)
    with pytest.raises(Stop):
        first.run(on_generation_end=interrupt)
    resumed = _evolution(tiny_space, constraints, seed=3)
    resumed.load_state_dict(saved["state"])
    resumed.run()
    assert resumed.ranked() == full.ranked() and resumed.history == full.history


def test_random_search_spends_the_same_budget_as_evolution(tiny_space):
    constraints = Constraints(tiny_space, num_classes=10)
    rnd = _evolution(tiny_space, constraints, mutations=0, crossovers=0)
    evo = _evolution(tiny_space, constraints)
    rnd.run(), evo.run()
    assert len(rnd.evaluator) == len(evo.evaluator) == 100
    # on a fitness whose optimum is known (the largest arch), evolution finds it from every seed,
    # random search with the same 100 evaluations (of 20k archs) from almost none
    optimum = float(sum(tiny_space.largest().depths) + sum(tiny_space.largest().embed_dims) / 100)
    best = {"evolution": [], "random": []}
    for seed in range(6):
        for name, knobs in (("evolution", {}), ("random", {"mutations": 0, "crossovers": 0})):
            e = _evolution(tiny_space, constraints, seed=seed, **knobs)
            e.run()
            best[name].append(e.ranked()[0]["top1"])
    assert best["evolution"] == [optimum] * 6
    assert best["random"].count(optimum) <= 1 and sum(best["random"]) / 6 < optimum - 0.2, best["random"]


def test_nsga2_fronts_and_selection():
    points = [(1, 5), (2, 3), (3, 4), (4, 1), (5, 5), (2, 2)]
    assert non_dominated_fronts(points) == [[0, 3, 5], [1], [2], [4]]
    assert set(nsga2_select(points, 3)) == {0, 3, 5}
    assert nsga2_select(points, 4)[:3] == [0, 3, 5] and nsga2_select(points, 4)[3] == 1


def test_pareto_objective_returns_a_front(tiny_space):
    constraints = Constraints(tiny_space, num_classes=10)
    evo = _evolution(tiny_space, constraints, objective="pareto")
    evo.run()
    front = evo.pareto_front()
    records = evo.evaluator.records()

    def dominated(r) -> bool:
        return any(o["top1"] >= r["top1"] and o["params"] <= r["params"] and (o["top1"], o["params"]) !=
                   (r["top1"], r["params"]) for o in records)

    expected = {r["arch"] for r in records if not dominated(r)}  # the front by brute force
    assert {r["arch"] for r in front} == expected and len(expected) >= 2
    accuracy = _evolution(tiny_space, constraints, objective="accuracy")
    accuracy.run()
    assert {r["arch"] for r in accuracy.evaluator.records()} != {r["arch"] for r in evo.evaluator.records()}  # NSGA-II selected other parents
    for r in front:  # nobody evaluated is both more accurate and smaller
        assert not any(o["top1"] > r["top1"] and o["params"] < r["params"] for o in evo.evaluator.records())


# -- the candidate evaluator ------------------------------------------------------------------------
def test_evaluator_equals_extracted_standalone_and_caches(tiny_space):
    torch.manual_seed(0)
    supernet = Supernet(tiny_space, num_classes=10).eval()
    split = CachedSplit(torch.randn(24, 3, 32, 32), torch.randint(0, 10, (24,)))
    evaluator = CandidateEvaluator(supernet, split, Constraints(tiny_space, num_classes=10), batch_size=10)
    archs = [tiny_space.sample(torch.Generator().manual_seed(i)) for i in range(3)]
    records = evaluator.evaluate(archs + archs[:1])
    assert len(evaluator) == 3 and records[0] is records[3]
    for arch, r in zip(archs, records):
        with torch.no_grad():
            logits = supernet.extract(arch).eval()(split.images)
        assert r["top1"] == pytest.approx(100 * (logits.argmax(-1) == split.labels).float().mean().item())
        assert r["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, split.labels).item(), rel=1e-5)
        assert r["params"] == sum(p.numel() for p in supernet.extract(arch).parameters())


def test_mmap_cached_split_round_trips(tmp_path):
    images, labels = torch.randn(10, 3, 32, 32), torch.arange(10)
    loader = [(images[:6], labels[:6]), (images[6:], labels[6:])]
    split = CachedSplit.from_loader(loader, "float16", tmp_path / "split.pt")
    assert (tmp_path / "split.pt").is_file() and split.images.dtype == torch.float16
    torch.testing.assert_close(split.images.float(), images, atol=1e-2, rtol=1e-2)
    again = CachedSplit.from_loader([], "float16", tmp_path / "split.pt")  # read back, no decoding
    assert torch.equal(again.labels, labels)


def test_mmap_split_cache_is_keyed_by_what_defines_it(tmp_path):
    import lightning as L

    from s3.search.devices import cached_split
    from s3.search.inputs import build_data, setup_data

    fabric = L.Fabric(accelerator="cpu", devices=1)

    def split(*overrides):
        cfg = compose_cfg([*FAST, "search.split_cache=mmap", *overrides], tmp_path, config_name="search")
        return cached_split(cfg, search_config(cfg.search), fabric, setup_data(build_data(cfg), tmp_path).search_dataloader(),
                            "search", tmp_path)

    a = split("data.search_per_class=4", "search.split_dtype=float32")
    b = split("data.search_per_class=2", "search.split_dtype=float16")  # same directory, other settings
    assert (len(a), a.images.dtype, len(b), b.images.dtype) == (40, torch.float32, 20, torch.float16)
    again = split("data.search_per_class=4", "search.split_dtype=float32", "data.eval_batch_size=7")
    assert torch.equal(again.images, a.images) and len(list(tmp_path.glob("search_split.*.pt"))) == 2


# -- search.py end to end ---------------------------------------------------------------------------
def _png_size(path: Path) -> tuple[int, int]:
    """A real PNG's (width, height) (a plot, not an empty or truncated file)."""
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()
        return img.size


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path)))


def test_evolution_search_writes_its_outputs(tmp_path, supernet_ckpt, caplog):
    out = tmp_path / "evo"
    with caplog.at_level(logging.INFO, logger="s3"):
        result = _search(out, "search=evolution", f"supernet={supernet_ckpt}", "constraints.params.max=9e5", *SMALL)
    assert "validating the 2 picks: 2/2" in caplog.text  # the phase after the search's own shows progress too
    assert "next: retrain the best arch with\n  python train.py experiment=retrain_tiny arch=" in caplog.text
    rows = _rows(out / "archs.csv")
    assert "macs" in rows[0] and "flops" not in rows[0]
    assert len(rows) == result["evaluated"] == 18 and all(int(r["params"]) <= 9e5 for r in rows)
    assert [float(r["top1"]) for r in rows] == sorted((float(r["top1"]) for r in rows), reverse=True)
    top1 = Arch.from_yaml(out / "top" / "top1.yaml")
    assert str(top1) == rows[0]["arch"] and len(result["picks"]) == 2
    # validation top-1 of each pick, by hand: its extracted subnet over the validation set, same precision
    from hydra.utils import instantiate

    from s3.models import load_supernet

    cfg = compose_cfg([*FAST, *SMALL], tmp_path / "check", config_name="search")
    dm = instantiate(cfg.data)
    dm.setup("validate")
    supernet = load_supernet(supernet_ckpt).eval()
    for pick in result["picks"]:
        model = supernet.extract(Arch.from_yaml(pick["yaml"])).eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in cfg.trainer.precision):
            correct = sum(int((model(x).argmax(-1) == y).sum()) for x, y in dm.val_dataloader())
        assert pick["val_top1"] == pytest.approx(100 * correct / 128)
    # every candidate's score is its top-1 on the held-out search split (not on the validation set)
    dm.setup("fit")
    for row in rows[:: len(rows) // 4]:
        model = supernet.extract(Arch.from_dict(json.loads(row["arch_json"]))).eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in cfg.trainer.precision):
            search = sum(int((model(x).argmax(-1) == y).sum()) for x, y in dm.search_dataloader())
            val = sum(int((model(x).argmax(-1) == y).sum()) for x, y in dm.val_dataloader())
        assert float(row["top1"]) == pytest.approx(100 * search / len(dm.search_set)), row["arch"]
        assert len(dm.search_set) == 40 and (search, 40) != (val, 128)
    for name in ("pareto.png", "history.png"):
        assert _png_size(out / name)[0] > 600, name
    history = _rows(out / "history.csv")
    assert [int(h["generation"]) for h in history] == [0, 1, 2] and int(history[-1]["evaluated"]) == 18
    assert [r["val_top1"] for r in _rows(out / "picks.csv")] == [str(p["val_top1"]) for p in result["picks"]]
    assert json.loads((out / "search_state.json").read_text())["generation"] == 3
    assert OmegaConf.load(out / "config.yaml").search.population == 6


def test_search_resume_equals_uninterrupted(tmp_path, supernet_ckpt, monkeypatch):
    args = ["search=evolution", f"supernet={supernet_ckpt}", *SMALL]
    _search(tmp_path / "full", *args)

    original = Evolution.run

    def interrupted(self, on_generation_end=None, progress=None):
        def stop(e):
            on_generation_end(e)
            if e.generation == 2:
                raise KeyboardInterrupt
        return original(self, stop, progress)

    monkeypatch.setattr(Evolution, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "resumed", *args)
    assert not (tmp_path / "resumed" / "result.json").exists()
    monkeypatch.setattr(Evolution, "run", original)
    with pytest.raises(ValueError, match=r"holds a search started with other settings \(constraints\)"):
        _search(tmp_path / "resumed", *args, "constraints.params.max=9e5")
    _search(tmp_path / "resumed", *args)  # the identical command continues, as a requeued job would
    for name in ("archs.csv", "history.csv", "picks.csv"):
        assert _rows(tmp_path / "resumed" / name) == _rows(tmp_path / "full" / name), name
    with pytest.raises(ValueError, match=r"holds a finished search \(result.json\); pass overwrite=true"):
        _search(tmp_path / "resumed", *args)
    _search(tmp_path / "resumed", *args, "overwrite=true")  # afresh: the same result again
    assert _rows(tmp_path / "resumed" / "archs.csv") == _rows(tmp_path / "full" / "archs.csv")


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_a_killed_search_process_continues_on_the_identical_command(tmp_path, supernet_ckpt):
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(ROOT / "search.py"), *FAST, "search=evolution", f"supernet={supernet_ckpt}", *SMALL,
            "search.generations=6"]

    def command(out: Path) -> list[str]:
        return [*args, f"hydra.run.dir={out}"]

    full, part = tmp_path / "full", tmp_path / "part"
    _search(full, "search=evolution", f"supernet={supernet_ckpt}", *SMALL, "search.generations=6")  # in-process
    proc = subprocess.Popen(command(part), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state, deadline = part / "search_state.json", time.time() + 240
    while not (state.is_file() and json.loads(state.read_text())["generation"] >= 2) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # mid-search: SLURM's time limit or preemption
    assert proc.wait(60) != 0 and not (part / "result.json").exists()
    done = subprocess.run(command(part), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "continuing the search" in (part / "search.log").read_text()
    for name in ("archs.csv", "history.csv", "picks.csv"):
        assert _rows(part / name) == _rows(full / name), name


@pytest.mark.parametrize("overrides, strategy, world, backend", [
    (["trainer=cpu"], "SingleDeviceStrategy", 1, None),
    (["trainer=cpu", "trainer.devices=auto"], "SingleDeviceStrategy", 1, None),
    (["trainer=ddp_cpu"], "DDPStrategy", 2, "gloo"),
    (["trainer=ddp_cpu", "trainer.num_nodes=2"], "DDPStrategy", 4, "gloo"),
    (["trainer=cpu", "trainer.devices=2", "+trainer.strategy=ddp_spawn"], "DDPStrategy", 2, None),
    (["trainer=cpu", "trainer.devices=3", "+trainer.strategy=ddp_find_unused_parameters_true"], "DDPStrategy", 3, None),
    (["trainer=ddp_cpu", "trainer.strategy._target_=lightning.pytorch.strategies.FSDPStrategy"], "DDPStrategy", 2, None),
])
def test_the_search_fabric_follows_the_trainer_config(tmp_path, overrides, strategy, world, backend):
    from s3.search.devices import build_fabric

    fabric = build_fabric(compose_cfg([*FAST, *overrides], tmp_path, config_name="search"))
    assert type(fabric.strategy).__name__ == strategy and fabric.world_size == world
    if backend:
        assert fabric.strategy._process_group_backend == backend
    if "+trainer.strategy=ddp_spawn" in overrides:
        assert fabric.strategy._start_method == "spawn"


def test_a_strategy_fabric_cannot_take_is_refused_before_anything_is_written(tmp_path):
    cfg = compose_cfg([*FAST, "search=random", "+trainer.strategy=ddp_sometimes"], tmp_path / "run", config_name="search")
    with pytest.raises(ValueError, match=r"trainer.strategy=ddp_sometimes: allowed 'auto', \[.*'ddp_spawn'"):
        SearchSession.open(cfg)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def _two_runs(tmp_path: Path, *overrides: str, one: tuple = (), two: tuple = ()) -> tuple[Path, Path]:
    """The same search.py command on one process and on two gloo processes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outs = []
    for name, trainer, extra in (("one", "cpu", one), ("two", "ddp_cpu", two)):
        out = tmp_path / name
        cmd = [sys.executable, str(ROOT / "search.py"), *FAST, *overrides, *extra, f"trainer={trainer}",
               f"hydra.run.dir={out}"]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(out)
    return outs[0], outs[1]


def _scored(rows: list[dict]) -> list[tuple]:
    return [(r["arch"], float(r["top1"]), round(float(r["loss"]), 4), int(r["params"]), int(r["macs"])) for r in rows]


@pytest.mark.slow  # whole entry-point processes (make test-fast skips it)
@pytest.mark.parametrize("method", ["random", "evolution"])
def test_an_arch_search_on_two_processes_equals_one(tmp_path, supernet_ckpt, method):
    """The ranks score their share of each chunk of candidates and gather them: the same records,
    the same generations and the same found arch as one process (losses to float rounding)."""
    one, two = _two_runs(tmp_path, f"search={method}", f"supernet={supernet_ckpt}", *SMALL)
    assert len(_rows(one / "archs.csv")) == 18
    assert _scored(_rows(two / "archs.csv")) == _scored(_rows(one / "archs.csv"))
    assert _rows(two / "history.csv") == _rows(one / "history.csv")
    picks = [[(p["arch"], p["top1"], p["val_top1"]) for p in json.loads((d / "result.json").read_text())["picks"]]
             for d in (one, two)]
    assert picks[1] == picks[0] and len(picks[0]) == 2


@pytest.mark.slow  # whole entry-point processes (make test-fast skips it)
def test_a_space_search_on_two_processes_equals_one_with_the_global_batch(tmp_path):
    """Two gloo ranks x batch 16 train each iteration's supernet as one process x batch 32 does
    (the same samples per step, averaged gradients), then score the pool in shares: the same
    E-T Errors, decisions and searched space. Under the same per-rank batch the two would differ
    by design (twice the global batch), which is why the batch is halved here."""
    exact = ["data.augment=false", "trainer.precision=32-true", "search=space", "search.iterations=2",
             "search.samples=12", "search.top_k=3", "search.threshold=0.0"]
    one, two = _two_runs(tmp_path, *exact, one=("data.batch_size=32",), two=("data.batch_size=16",))
    a, b = (json.loads((d / "search_state.json").read_text())["iterations"] for d in (one, two))
    assert len(a) == len(b) == 2 and a[0]["moved"] > 0
    for x, y in zip(a, b):
        assert (y["space"], y["next_space"], y["moved"]) == (x["space"], x["next_space"], x["moved"])
        assert [d["action"] for d in y["decisions"]] == [d["action"] for d in x["decisions"]]
        assert y["et_error"] == pytest.approx(x["et_error"], abs=1e-6)
        assert _scored(_rows(two / f"iter{x['iteration']}" / "archs.csv")) == \
            _scored(_rows(one / f"iter{x['iteration']}" / "archs.csv"))
    assert (two / "searched_space.yaml").read_text() == (one / "searched_space.yaml").read_text()


def test_space_search_writes_iterations_and_a_loadable_space(tmp_path):
    out = tmp_path / "space"
    result = _search(out, "search=space", "search.iterations=2", "search.samples=12", "search.top_k=3",
                     "search.threshold=0.0")
    assert result["iterations"] == len(result["et_error"]) >= 1
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


def test_the_e_t_error_of_a_space_on_its_supernet_is_the_pools_by_hand(tmp_path, supernet_ckpt):
    """search=et_error scores a space on a trained supernet: Q_e / Q_t of the archs it wrote,
    recomputed from their search-split top-1."""
    result = _search(tmp_path / "score", "search=et_error", f"supernet={supernet_ckpt}", "search.samples=12",
                     "search.top_k=3")
    errors = [100.0 - float(r["top1"]) for r in _rows(tmp_path / "score" / "archs.csv")]
    assert len(errors) == 12 and result["et_error"] == et_error(errors, 3).to_dict()


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_space_search_stopped_mid_pool_and_mid_training_continues_and_gives_each_training_its_own_wandb_run(
        tmp_path, monkeypatch):
    from s3.lit.supernet import SupernetModule

    monkeypatch.setenv("WANDB_SILENT", "true")
    args = ["search=space", "search.iterations=2", "search.samples=12", "search.top_k=3", "search.threshold=0.0",
            "logger=wandb", "logger.wandb.offline=true", "callbacks.step_checkpoint.every_n_train_steps=5"]
    steps = {"iter1": 0, "stop_at": None}
    training_step = SupernetModule.training_step

    def stepped(self, batch, batch_idx):
        if "/iter1/" in str(self.trainer.checkpoint_callback.dirpath):
            steps["iter1"] += 1
            if steps["iter1"] == steps["stop_at"]:
                raise KeyboardInterrupt  # a stop in the middle of iteration 1's supernet training
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(SupernetModule, "training_step", stepped)
    calls = {"n": 0, "stop_at": None}
    measure = CandidateEvaluator.measure

    def counted(self, arch, split=None):
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            raise KeyboardInterrupt  # a stop in the middle of iteration 0's E-T Error pool
        return measure(self, arch, split)

    monkeypatch.setattr(CandidateEvaluator, "measure", counted)
    full = _search(tmp_path / "full", *args)
    full_calls, calls["n"], calls["stop_at"] = calls["n"], 0, 6
    assert full["iterations"] == 2
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "part", *args)
    assert not (tmp_path / "part" / "result.json").exists() and (tmp_path / "part" / "iter0" / "pool_state.json").is_file()
    calls["n"], calls["stop_at"], steps["iter1"], steps["stop_at"] = 0, None, 0, 8
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns the interrupt into exit 1
        _search(tmp_path / "part", *args)
    assert steps["iter1"] == 8 and not (tmp_path / "part" / "iter1" / "pool_state.json").exists()
    steps["iter1"], steps["stop_at"] = 0, None
    assert _search(tmp_path / "part", *args) == {**full, "searched_space": str(tmp_path / "part" / "searched_space.yaml")}
    assert steps["iter1"] == 5  # the training continued from step 5's last.ckpt, not from its start
    assert calls["n"] == full_calls - 5  # the 5 archs scored before the stop are not scored again
    for name in ("iter0/archs.csv", "iter1/archs.csv", "iter0/et_error.csv"):
        assert _rows(tmp_path / "part" / name) == _rows(tmp_path / "full" / name), name
    # one W&B run per training and one for the search's summary, none merged into another
    runs = sorted(p.relative_to(tmp_path / "full").parts[0] for p in (tmp_path / "full").glob("**/wandb/offline-run-*"))
    assert runs == ["iter0", "iter1", "wandb"]
    # the summary run holds, besides Q / Q_e / Q_t, every choice's E-T Error and decision and every scored arch
    media = next((tmp_path / "part" / "wandb").glob("offline-run-*")) / "files" / "media" / "table" / "space"
    choices = json.loads(next(media.glob("choices_*.table.json")).read_text())
    archs = json.loads(next(media.glob("archs_*.table.json")).read_text())
    expected = [_rows(tmp_path / "part" / f"iter{t}" / "et_error.csv") for t in (0, 1)]
    assert len(choices["data"]) == sum(map(len, expected)) and choices["columns"][:4] == ["iteration", "stage",
                                                                                           "dimension", "choice"]
    assert [row[choices["columns"].index("decision")] for row in choices["data"]] == [
        r["decision"] for rows in expected for r in rows]
    assert len(archs["data"]) == 2 * 12 and {row[0] for row in archs["data"]} == {0, 1}


# -- bad input ---------------------------------------------------------------------------------------------
def _search_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "search.py"), *FAST, f"hydra.run.dir={tmp_path}", *overrides]
    return subprocess.run(cmd, cwd=tmp_path.parent, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_unsatisfiable_constraints_fail_before_any_evaluation(tmp_path):
    proc = _search_cli(tmp_path / "bad", "constraints.params.max=1e5", "supernet=/nonexistent.ckpt")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "constraints.params=[-inf, 100k] cannot be met" in proc.stderr and "range over [2" in proc.stderr


@pytest.mark.parametrize("overrides, message", [
    (["search=space", "search.samples=5", "search.top_k=10"], "search.top_k=10: the top tier cannot exceed search.samples=5"),
    (["search=space", "search.batch_size=0"], "search.batch_size=0: must be >= 1"),
    (["search.batch_size=0"], "search.batch_size=0: must be >= 1"),
    (["data.batch_size=0"], "data.batch_size=0: must be >= 1"),
])
def test_bad_search_knobs_are_one_line_before_any_work(tmp_path, overrides, message, capsys):

    cfg = compose_cfg([*FAST, *overrides, "supernet=/nonexistent.ckpt"], tmp_path / "bad", config_name="search")
    assert message in user_error(capsys, SearchSession.open, cfg)  # in-process: what search.py runs before any work


def test_supernet_of_another_space_is_rejected(tmp_path, supernet_ckpt, capsys):

    cfg = compose_cfg([*FAST, "space=s3_t", f"supernet={supernet_ckpt}"], tmp_path / "bad", config_name="search")
    err = user_error(capsys, SearchSession.open, cfg)
    assert "trained on another space" in err and "img_size 224 != 32" in err
    cfg = compose_cfg([*FAST, f"paths.log_dir={tmp_path / 'empty'}"], tmp_path / "none", config_name="search")
    assert "Train one first (`python train.py`" in user_error(capsys, SearchSession.open, cfg)


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


def test_wandb_offline_gets_the_evaluated_archs_table(tmp_path, supernet_ckpt, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "wandb"
    _search(out, f"supernet={supernet_ckpt}", *SMALL, "logger=wandb", "logger.wandb.offline=true")
    tables = list((out / "wandb").glob("offline-run-*/files/media/table/search/archs_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert len(table["data"]) == 18 and table["columns"][:2] == ["rank", "top1"]
    picks = json.loads(next((out / "wandb").glob("offline-run-*/files/media/table/search/picks_*.table.json")).read_text())
    result = json.loads((out / "result.json").read_text())
    assert picks["columns"] == ["rank", "top1", "val_top1", "params", "macs", "arch"]
    assert [row[2] for row in picks["data"]] == [p["val_top1"] for p in result["picks"]] and len(picks["data"]) == 2
    run = tables[0].parents[4]  # offline-run-*/
    import time

    deadline = time.time() + 60  # the resolved config is logged (offline: in the run file, which W&B's
    while time.time() < deadline:  # service process may still be flushing when the run has ended)
        record = next(run.glob("run-*.wandb")).read_bytes()
        if b'"population":6,"generations":3' in record:
            break
        time.sleep(0.5)
    assert b'"population":6,"generations":3' in record and b"task_name" in record and b"constraints" in record
    plots = (run / "files" / "media" / "images" / "search" / "plots").glob("*.png")
    assert sorted(p.name.rsplit("_", 2)[0] for p in plots) == ["history", "pareto"]  # one key per figure


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_multirun_one_search_per_budget_finishes_its_feasible_jobs_and_summarises_them(tmp_path, supernet_ckpt):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "search.py"), "-m", *FAST, f"supernet={supernet_ckpt}", *SMALL,
           "constraints.params.max=1e5,6e5,9e5", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    # job 0 cannot be met on the tiny space: it is recorded, the others still run, the sweep exits 2
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "error: 1 of 3 jobs failed: job 0 (constraints.params.max=100000.0): constraints.params=[-inf, 100k]" \
        in proc.stderr
    summary = _rows(tmp_path / "summary.csv")
    assert [(r["job"], r["status"]) for r in summary] == [("0", "failed"), ("1", "done"), ("2", "done")]
    assert "cannot be met" in json.loads((tmp_path / "0" / "failed.json").read_text())["error"]
    for job, budget in (("1", 6e5), ("2", 9e5)):
        rows = _rows(tmp_path / job / "archs.csv")
        assert rows and all(int(r["params"]) <= budget for r in rows)
        pick = json.loads((tmp_path / job / "result.json").read_text())["picks"][0]
        row = summary[int(job)]
        assert (row["arch"], int(row["params"]), int(row["macs"]), float(row["top1"])) == (
            pick["arch"], pick["params"], pick["macs"], round(pick["top1"], 2))
    assert (tmp_path / "summary.md").read_text().count("\n") == 2 + 3


def test_random_preset_is_evolution_without_variation(tmp_path):

    rnd = search_config(compose_cfg(["search=random"], tmp_path, config_name="search").search)
    evo = search_config(compose_cfg(["search=evolution"], tmp_path, config_name="search").search)
    assert (rnd.kind, evo.kind) == ("random", "evolution")
    assert (rnd.mutations, rnd.crossovers) == (0, 0) and (evo.mutations, evo.crossovers) == (25, 25)
    assert rnd.population * rnd.generations == evo.population * evo.generations == 1000


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


def test_a_search_split_other_than_the_held_out_one_is_refused_even_for_a_copied_checkpoint(tmp_path, supernet_ckpt,
                                                                                           capsys):
    import shutil


    copied = tmp_path / "elsewhere" / "supernet.ckpt"  # no search_split.json beside it
    copied.parent.mkdir()
    shutil.copy(supernet_ckpt, copied)
    for ckpt in (supernet_ckpt, copied):  # in-process: what search.py runs before any work
        cfg = compose_cfg([*FAST, f"supernet={ckpt}", "data.search_per_class=5", *SMALL], tmp_path / "bad",
                          config_name="search")
        assert "the search split differs from the one held out" in user_error(capsys, SearchSession.open, cfg)
    cfg = compose_cfg([*FAST, f"supernet={copied}", "data.root=/nonexistent/fashion"], tmp_path / "nodata",
                      config_name="search")
    assert "Fashion-MNIST not found" in user_error(capsys, SearchSession.open, cfg)


def test_wandb_runs_of_a_sweep_are_named_by_job_and_overrides(tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    from s3.config import build_loggers, run_name

    cfg = compose_cfg(["logger=wandb", "logger.wandb.offline=true", "seed=2"], tmp_path, config_name="search")
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode, cfg.hydra.job.num, cfg.hydra.job.override_dirname = RunMode.MULTIRUN, 1, "seed=2"
        cfg.hydra.sweep.dir = str(tmp_path / "sweep")
    HydraConfig.instance().set_config(cfg)
    assert run_name(cfg, "search") == "search tiny [1] seed=2"
    (logger,) = build_loggers(cfg)
    assert logger._wandb_init["name"] == "search tiny [1] seed=2" and logger._wandb_init["group"] == "sweep"
    assert logger._wandb_init["tags"] == ["dev"]


class RankZeroOfTwo:
    """Fabric's rank and all_reduce as rank 0 of two sees them: rank 1 measured every second arch."""

    global_rank, world_size = 0, 2

    def __init__(self, fitness, archs):
        self.fitness, self.archs, self.reduced = fitness, archs, []

    def all_reduce(self, data, reduce_op):
        assert reduce_op == "sum"
        theirs = torch.zeros_like(data)
        for i in range(1, len(self.archs), 2):
            theirs[i, 0] = self.fitness(self.archs[i])
        self.reduced.append(data.clone())
        return data + theirs


def test_on_two_ranks_the_candidates_are_dealt_summed_and_counted_once(tiny_space):
    fitness = lambda a: float(sum(a.depths)) + a.embed_dims[0] / 7  # noqa: E731  (not a round float)
    archs = list(dict.fromkeys(tiny_space.sample(torch.Generator().manual_seed(i)) for i in range(5)))
    fabric = RankZeroOfTwo(fitness, archs)
    evaluator = SyntheticEvaluator(Constraints(tiny_space, num_classes=10), fitness, fabric)
    steps = []
    records = evaluator.evaluate(archs, steps.append)
    mine = range(0, len(archs), 2)
    assert steps == [1] * len(mine) + [len(archs) - len(mine)]  # rank 0's own as they come, then the others
    (sent,) = fabric.reduced  # one collective per call; rank 0 sent only its own rows, zeros elsewhere
    assert [bool(row.any()) for row in sent] == [i in mine for i in range(len(archs))]
    assert [r["top1"] for r in records] == [fitness(a) for a in archs]  # exact, both ranks' values
    assert evaluator.evaluate(archs) == records and len(fabric.reduced) == 1  # cached: no second collective
