"""The arch search: mutation and crossover, evolution and its resumable state, random search on the
same budget, NSGA-II and the Pareto objective, and what search.py writes for an evolution search."""

import json
import logging
import random

import pytest
import torch
from omegaconf import OmegaConf

from s3.constraints import Constraints
from s3.search.configs import search_config
from s3.search.evolution import Evolution, EvolutionConfig, crossover, mutate
from s3.search.pareto import non_dominated_fronts, nsga2_select
from s3.space import DIMENSIONS, Arch
from tests.helpers import FAST, SMALL, SyntheticEvaluator, compose_cfg
from tests.helpers import csv_rows as _rows
from tests.helpers import png_size as _png_size
from tests.helpers import run_search as _search


# -- evolution -----------------------------------------------------------------------------------------
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
    measure, measured = resumed.evaluator.measure, []
    resumed.evaluator.measure = lambda arch, split=None: measured.append(arch) or measure(arch, split)
    resumed.run()
    assert len(measured) == 20 * 3  # generations 2 to 4 only: a load_state_dict that restored nothing would measure all 5
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


# -- search.py end to end ------------------------------------------------------------------------------
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
    differs = []
    for row in rows[:: len(rows) // 4]:
        model = supernet.extract(Arch.from_dict(json.loads(row["arch_json"]))).eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in cfg.trainer.precision):
            search = sum(int((model(x).argmax(-1) == y).sum()) for x, y in dm.search_dataloader())
            val = sum(int((model(x).argmax(-1) == y).sum()) for x, y in dm.val_dataloader())
        assert float(row["top1"]) == pytest.approx(100 * search / len(dm.search_set)), row["arch"]
        assert len(dm.search_set) == 40
        differs.append(float(row["top1"]) != pytest.approx(100 * val / 128))
    assert any(differs)  # scored on the search split: the validation top-1 differs for some candidate
    for name in ("pareto.png", "history.png"):
        assert _png_size(out / name)[0] > 600, name
    history = _rows(out / "history.csv")
    assert [int(h["generation"]) for h in history] == [0, 1, 2] and int(history[-1]["evaluated"]) == 18
    assert [r["val_top1"] for r in _rows(out / "picks.csv")] == [str(p["val_top1"]) for p in result["picks"]]
    assert json.loads((out / "search_state.json").read_text())["generation"] == 3
    assert OmegaConf.load(out / "config.yaml").search.population == 6


def test_random_preset_is_evolution_without_variation(tmp_path):

    rnd = search_config(compose_cfg(["search=random"], tmp_path, config_name="search").search)
    evo = search_config(compose_cfg(["search=evolution"], tmp_path, config_name="search").search)
    assert (rnd.kind, evo.kind) == ("random", "evolution")
    assert (rnd.mutations, rnd.crossovers) == (0, 0) and (evo.mutations, evo.crossovers) == (25, 25)
    assert rnd.population * rnd.generations == evo.population * evo.generations == 1000
