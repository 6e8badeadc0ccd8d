"""The latency predictor (issue 45): its components are exactly what a forward pass runs, its
table prices every arch of a space, its fallback and calibration are the least-squares fits they
claim, it predicts whole archs measured on this machine, its cache is keyed by what decides a
latency; and the latency bound of a search: one line for a bad backend or an unmeetable bound, the
same feasibility checks as params and MACs, and the picks' latency re-measured beside the prediction."""

from __future__ import annotations

import json
import random

import pytest
import torch

from s3.constraints import Constraints, LatencyTarget
from s3.cost import count_macs
from s3.latency_predictor import (
    LatencyPredictor,
    NetGeometry,
    component_features,
    components,
    draw_archs,
    load_or_build,
    space_components,
)
from s3.space import SearchSpace
from tests.conftest import SPACES
from tests.helpers import FAST, SMALL, compose_cfg, csv_rows, run_search, user_error

WIDE = SearchSpace.from_yaml(SPACES / "wide.yaml")
INITIAL_T = SearchSpace.from_yaml(SPACES / "initial_t.yaml")


def component_macs(key, geometry: NetGeometry) -> float:
    """A component's multiply-accumulates from its regressors (one image)."""
    f = component_features(key, geometry, 1)
    return {"attn": 4 * f[0] + 2 * f[1], "mlp": 2 * f[0], "merge": f[0], "stem": f[0], "head": f[0],
            "move": 0}[key[0]]


@pytest.mark.parametrize("space", [WIDE, INITIAL_T], ids=["wide", "initial_t"])
def test_an_archs_components_do_exactly_its_macs_and_the_space_lists_every_component(space):
    geometry = NetGeometry(space.img_size, space.patch_size, 3, 10)
    listed = set(space_components(space, geometry))
    rng = random.Random(0)
    for _ in range(300):
        arch = space.sample(rng)
        parts = components(arch, geometry)
        assert set(parts) <= listed
        assert sum(component_macs(k, geometry) * n for k, n in parts.items()) == count_macs(arch, **{
            "img_size": space.img_size, "patch_size": space.patch_size, "num_classes": 10})
        assert sum(n for k, n in parts.items() if k[0] == "attn") == sum(arch.depths)


def test_layout_gathers_are_counted_as_the_stage_runs_them():
    """Swin's alternation: every block moves to its own layout, and the stage moves back once; two
    blocks of a global window (no shift) share one layout."""
    arch_yaml = {"depths": [2, 1, 3, 2], "embed_dims": [16, 32, 64, 128], "mlp_ratios": [2.0] * 4, "num_heads": [2] * 4,
                 "window_sizes": [[4, 4], [2], [2, 2, 1], [2, 2]]}
    from s3.space import Arch

    arch = Arch.create(**arch_yaml)
    moves = {k[1]: n for k, n in components(arch, NetGeometry(32, 2)).items() if k[0] == "move"}
    # stage 1: (4,0) (4,2) back = 3; stage 2: (2,0) back = 2; stage 3: (2,0) (2,1) (1,0) back = 4;
    # stage 4 (grid 2): window 2 is global, unshifted: one layout, back = 2
    assert moves == {0: 3, 1: 2, 2: 4, 3: 2}


def test_the_table_prices_by_sum_and_the_calibration_is_least_squares():
    geometry = NetGeometry(32, 2, 3, 10)
    keys = space_components(WIDE, geometry)
    table = {k: 0.01 * (1 + i % 7) for i, k in enumerate(keys)}
    predictor = LatencyPredictor("pytorch", 1, 1, "m", table)
    archs = draw_archs(WIDE, 6, 0)
    sums = [sum(table[k] * n for k, n in components(a, geometry).items()) for a in archs]
    assert [predictor.predict(a, geometry) for a in archs] == pytest.approx(sums)
    predictor.calibrate([(a, 2.5 * s + 0.75) for a, s in zip(archs, sums)], geometry)
    assert (predictor.scale, predictor.offset) == (pytest.approx(2.5), pytest.approx(0.75))
    restored = LatencyPredictor.from_dict(json.loads(json.dumps(predictor.to_dict())))
    assert [restored.predict(a, geometry) for a in archs] == pytest.approx([2.5 * s + 0.75 for s in sums])


def test_a_component_missing_from_the_table_is_priced_by_its_kinds_fit():
    """A table made linear in the regressors: the fallback recovers a removed entry exactly."""
    geometry = NetGeometry(32, 2, 3, 10)
    table = {k: 1e-6 * sum(component_features(k, geometry, 1)[:-1]) + 0.02 for k in space_components(WIDE, geometry)}
    held = [k for k in table if k[0] == "attn"][5]
    truth = table.pop(held)
    predictor = LatencyPredictor("pytorch", 1, 1, "m", table)
    assert predictor.component_ms(held, geometry) == pytest.approx(truth, rel=1e-6)
    with pytest.raises(KeyError, match="no 'head' entry"):
        LatencyPredictor("pytorch", 1, 1, "m", {}).component_ms(("head", 128), geometry)


@pytest.mark.slow  # times a table and whole archs
def test_a_table_timed_on_this_machine_prices_every_component_and_is_calibrated_on_whole_archs():
    """The plumbing of a real build, not its accuracy (a timing, which bench/latency.py measures on a
    quiet machine: predictor tau and error against whole archs): every component of the space is
    timed, and a prediction is the calibrated sum of its components' times."""
    space = SearchSpace.from_yaml(SPACES / "tiny.yaml")
    geometry = NetGeometry(32, 2, 3, 10)
    archs = draw_archs(space, 3, 1)
    with torch.inference_mode():
        predictor = LatencyPredictor.build(space, geometry, "pytorch", 1, archs, repeats=1, rounds=2,
                                           progress=lambda s: None)
    assert set(predictor.table) == set(space_components(space, geometry))
    assert all(0 < ms < float("inf") for ms in predictor.table.values())
    assert predictor.scale != 1.0 or predictor.offset != 0.0  # calibrated on the whole archs it timed
    for arch in (*archs, space.largest(), space.smallest()):
        raw = sum(predictor.table[k] * n for k, n in components(arch, geometry).items())
        assert predictor.predict(arch, geometry) == pytest.approx(predictor.scale * raw + predictor.offset)


def test_the_cache_is_keyed_by_backend_batch_threads_and_space(tmp_path, monkeypatch):
    geometry = NetGeometry(32, 2, 3, 10)
    space = SearchSpace.from_yaml(SPACES / "tiny.yaml")
    built = []

    def build(space, geometry, backend, batch, fit_archs=(), **kw):
        built.append((backend, batch, torch.get_num_threads(), kw.get("precision")))
        return LatencyPredictor(backend, batch, torch.get_num_threads(), "m",
                                {k: 0.1 for k in space_components(space, geometry)})

    monkeypatch.setattr(LatencyPredictor, "build", staticmethod(build))
    first, path = load_or_build(tmp_path, space, geometry, "pytorch", 1, progress=lambda s: None)
    again, same = load_or_build(tmp_path, space, geometry, "pytorch", 1, progress=lambda s: None)
    assert same == path and len(built) == 1 and again.table == first.table
    load_or_build(tmp_path, space, geometry, "pytorch", 8, progress=lambda s: None)
    load_or_build(tmp_path, WIDE, geometry, "pytorch", 1, progress=lambda s: None)
    load_or_build(tmp_path, space, geometry, "pytorch", 1, progress=lambda s: None, precision="bf16")
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        load_or_build(tmp_path, space, geometry, "pytorch", 1, progress=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    assert len(built) == 5 and len(list(tmp_path.glob("latency-*.json"))) == 5
    assert built[3][3] == "bf16" and len(list(tmp_path.glob("latency-pytorch-bf16-*.json"))) == 1


# -- the latency bound -------------------------------------------------------------------------------
def test_a_latency_bound_is_checked_like_params_and_macs():
    constraints = Constraints(WIDE, params={"min": 7.5e5, "max": 1e6}, latency_ms={"max": 3.0}, num_classes=10)
    assert constraints.latency == LatencyTarget("pytorch", 1, None, "fp32")
    with pytest.raises(RuntimeError, match="no latency predictor"):
        constraints.cost(WIDE.smallest())
    constraints.use_latency(lambda arch: sum(arch.depths) * 0.25)  # 1.0 ms (smallest) .. 2.75 ms (largest)
    deep = WIDE.largest()
    assert constraints.cost(deep)["latency_ms"] == 2.75
    assert not constraints.violations({"params": 8e5, "macs": 1, "latency_ms": 3.0})
    assert constraints.violations({"params": 8e5, "macs": 1, "latency_ms": 3.01}) == ["latency_ms=3.01 outside [-inf, 3]"]
    constraints.check_feasible(WIDE)
    unmeetable = Constraints(WIDE, latency_ms={"max": 0.5, "batch": 8}, num_classes=10)
    unmeetable.use_latency(lambda arch: sum(arch.depths) * 0.25)
    with pytest.raises(ValueError, match=r"constraints.latency_ms=\[-inf, 0.5\] cannot be met: .* range over "
                                         r"\[1, 2.75\], predicted at batch 8 on pytorch"):
        unmeetable.check_feasible(WIDE)
    assert "latency_ms" not in Constraints(WIDE, latency_ms={"max": None, "backend": "pytorch"}).ranges


@pytest.mark.parametrize("bound, message", [
    ({"max": 3, "backend": "tensorrt"}, "constraints.latency_ms.backend='tensorrt': allowed ['pytorch', 'cuda', 'onnxruntime']"),
    ({"max": 3, "batch": 0}, "constraints.latency_ms.batch=0: must be an integer >= 1"),
    ({"max": 3, "threads": 1.5}, "constraints.latency_ms.threads=1.5: must be an integer >= 1, or null"),
    ({"max": 3, "repeats": 5}, "constraints.latency_ms: unknown keys ['repeats']; allowed: min, max, backend, batch"),
    ({"max": "fast"}, "constraints.latency_ms.max='fast': must be a finite number"),
    ({"max": 3, "precision": "fp16"}, "constraints.latency_ms.precision='fp16': allowed ['fp32', 'bf16']"),
    ({"max": 3, "precision": "bf16", "backend": "onnxruntime"},
     "constraints.latency_ms.precision=bf16 with backend=onnxruntime: the exported models run in fp32 there"),
])
def test_a_bad_latency_bound_is_one_line(bound, message):
    with pytest.raises(ValueError) as e:
        Constraints(WIDE, latency_ms=bound)
    assert message in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
def test_a_cuda_bound_on_a_machine_without_cuda_is_one_line():
    with pytest.raises(ValueError, match="backend=cuda: no CUDA device on this machine; allowed here: 'pytorch', 'onnxruntime'"):
        Constraints(WIDE, latency_ms={"max": 3, "backend": "cuda"})


@pytest.mark.parametrize("overrides, message", [
    (["constraints.latency_ms.max=3", "constraints.latency_ms.backend=onnx"],
     "constraints.latency_ms.backend='onnx': allowed ['pytorch', 'cuda', 'onnxruntime']"),
    (["search.objective=pareto", "search.pareto_cost=latency_ms"],
     "search.pareto_cost=latency_ms: needs a latency bound"),
    (["constraints.latency_ms.max=1e-4", "data.root=/nonexistent"], "data.root"),  # other inputs before the timing
    (["constraints.latency_ms.max=1e-4", "supernet=SUPERNET"], "constraints.latency_ms=[-inf, 0.0001] cannot be met"),
])
def test_a_search_with_a_bad_latency_bound_stops_in_one_line(tmp_path, overrides, message, capsys, monkeypatch,
                                                               supernet_ckpt):
    from s3.search.session import SearchSession

    timed = []
    monkeypatch.setattr(LatencyPredictor, "build", staticmethod(
        lambda space, geometry, *a, **k: timed.append(1) or LatencyPredictor(
            "pytorch", 1, 1, "m", {c: 0.01 for c in space_components(space, geometry)})))
    overrides = [o.replace("SUPERNET", str(supernet_ckpt)) for o in overrides]
    if not any(o.startswith("supernet=") for o in overrides):
        overrides.append("supernet=/nonexistent.ckpt")
    cfg = compose_cfg([*FAST, *overrides, f"paths.cache_dir={tmp_path / 'cache'}"],
                      tmp_path / "bad", config_name="search")
    assert message in user_error(capsys, SearchSession.open, cfg)
    assert timed == ([1] if "cannot be met" in message else [])  # bad settings: said before any timing
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow  # two whole searches
def test_a_latency_bounded_search_keeps_every_candidate_under_it_and_re_measures_its_picks(tmp_path, supernet_ckpt):
    cache = tmp_path / "cache"
    base = [f"supernet={supernet_ckpt}", *SMALL, f"paths.cache_dir={cache}", "constraints.latency_ms.threads=1"]
    # the bound: the median predicted latency of the space, so that it cuts
    probe = run_search(tmp_path / "probe", *base, "constraints.latency_ms.max=1e9", "search.generations=1")
    predicted = sorted(float(r["latency_ms"]) for r in csv_rows(tmp_path / "probe" / "archs.csv"))
    bound = predicted[len(predicted) // 2]
    result = run_search(tmp_path / "run", *base, f"constraints.latency_ms.max={bound}",
                        "search.objective=pareto", "search.pareto_cost=latency_ms")
    rows = csv_rows(tmp_path / "run" / "archs.csv")
    assert len(rows) == 18 and all(float(r["latency_ms"]) <= bound for r in rows)
    assert len(list(cache.glob("latency-pytorch-fp32-b1-t1-*.json"))) == 1  # timed once, by the probe
    for pick in result["picks"]:
        assert pick["latency_ms"] <= bound and pick["measured_ms"] > 0
    assert result["latency"]["backend"] == "pytorch" and result["latency"]["threads"] == 1
    assert probe["picks"][0]["measured_ms"] > 0
    picks = csv_rows(tmp_path / "run" / "picks.csv")
    assert [float(p["latency_ms"]) for p in picks] == sorted(float(p["latency_ms"]) for p in picks)  # the front, by latency


@pytest.mark.slow  # times the 224x224 spaces' tables (one round each)
@pytest.mark.parametrize("experiment", ["space_t", "supernet_t"])
def test_a_latency_bound_composes_with_the_imagenet_presets_and_bounds_their_pools(tmp_path, monkeypatch, experiment):
    from s3.search.inputs import build_constraints, price_latency
    from s3.search.pool import sample_pool

    build = LatencyPredictor.build.__func__
    monkeypatch.setattr(LatencyPredictor, "build", classmethod(
        lambda cls, *a, **k: build(cls, *a, **{**k, "repeats": 1, "rounds": 1})))
    cfg = compose_cfg([f"experiment={experiment}", "constraints=s3_t", "constraints.latency_ms.max=1e9",
                       "constraints.latency_ms.threads=1", f"paths.cache_dir={tmp_path}"], tmp_path / "run",
                      config_name="search")
    space = SearchSpace.from_dict(cfg.space)
    constraints = build_constraints(cfg, space)
    price_latency(cfg, space, constraints)
    predicted = sorted(constraints.cost(a)["latency_ms"] for a in draw_archs(space, 40, 0, constraints.analytic_satisfied))
    bound = Constraints(space, cfg.constraints.params, latency_ms={"max": predicted[20]})
    bound.use_latency(constraints.predict_latency)
    pool = sample_pool(space, bound, 12, "latency", "stage_uniform")
    assert len(pool) == 12 and all(bound.cost(m.arch)["latency_ms"] <= predicted[20] for m in pool)
    assert all(20e6 <= bound.cost(m.arch)["params"] <= 30e6 for m in pool)


@pytest.mark.slow  # a whole search
def test_picks_that_run_far_from_their_prediction_say_that_the_machine_changed(tmp_path, supernet_ckpt, monkeypatch,
                                                                               caplog):
    import s3.search.arch_search as arch_search

    monkeypatch.setattr(arch_search, "measure_archs", lambda archs, *a, **k: {arch: 1e3 for arch in archs})
    with caplog.at_level("WARNING", logger="s3.search.arch_search"):
        result = run_search(tmp_path / "run", f"supernet={supernet_ckpt}", *SMALL, f"paths.cache_dir={tmp_path / 'c'}",
                            "constraints.latency_ms.max=1e9", "search.generations=1")
    assert all(p["measured_ms"] == 1e3 for p in result["picks"])
    assert "their predicted latency: this machine is busier (or quieter) now than when its latency table" in caplog.text
