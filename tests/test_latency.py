"""s3.latency: the models compared run in turns, each timed per round, and a backend the machine
cannot run is one line."""

from __future__ import annotations

import pytest
import torch

from s3.latency import interleaved, measure, runner
from s3.models import S3Transformer
from s3.space import Arch


def test_the_runners_take_turns_and_each_round_is_timed_per_call():
    """A fake clock advanced by each call's cost: `a` costs 2 ms a call, `b` 5 ms but 7 ms in its
    second round (the machine slowed down). After one warm-up call each, the runners take turns of
    `repeats` calls, and each round's time is per call."""
    now, seen = [0.0], []
    costs = {"a": iter([0.0] + [2.0] * 6), "b": iter([0.0] + [5.0, 5.0, 7.0, 7.0, 5.0, 5.0])}

    def make(name):
        def run():
            seen.append(name)
            now[0] += next(costs[name]) / 1e3
        return run

    times = interleaved({"a": make("a"), "b": make("b")}, repeats=2, rounds=3, clock=lambda: now[0])
    assert seen == ["a", "b"] + ["a", "a", "b", "b"] * 3  # warm-ups, then turns of `repeats` calls
    assert times["a"] == pytest.approx([2.0, 2.0, 2.0]) and times["b"] == pytest.approx([5.0, 7.0, 5.0])
    with pytest.raises(ValueError, match="repeats=0 and rounds=3 must be >= 1"):
        interleaved({"a": make("a")}, repeats=0, rounds=3)


def test_measure_gives_each_model_a_median_between_its_fastest_and_slowest_round():
    small = Arch.create([1, 1, 1, 1], [16, 32, 48, 64], [2.0] * 4, [1, 1, 1, 1], [2, 2, 2, 2])
    large = Arch.create([2, 2, 2, 2], [64, 128, 192, 256], [4.0] * 4, [2, 4, 6, 8], [4, 4, 2, 2])
    models = {a: S3Transformer(arch, img_size=32, patch_size=2, num_classes=10) for a, arch in
              (("small", small), ("large", large))}
    rows = measure(models, "pytorch", batch=4, input_size=(3, 32, 32), repeats=3, rounds=3)
    assert [(r.name, r.backend, r.batch, r.threads) for r in rows] == \
        [("small", "pytorch", 4, torch.get_num_threads()), ("large", "pytorch", 4, torch.get_num_threads())]
    assert all(0 < r.min_ms <= r.median_ms <= r.max_ms for r in rows)
    by_name = {r.name: r for r in rows}
    assert by_name["large"].median_ms > by_name["small"].median_ms  # ~20x the MACs: slower whatever the drift


@pytest.mark.parametrize("backend, message", [
    ("tpu", "backend=tpu: allowed ['pytorch', 'onnxruntime', 'cuda']"),
    ("onnxruntime", "backend=onnxruntime: needs the model's ONNX file"),
])
def test_a_backend_that_cannot_run_is_one_line(backend, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        runner(torch.nn.Identity(), backend, torch.zeros(1, 3, 8, 8))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs backend=cuda")
def test_cuda_without_a_gpu_is_one_line():
    with pytest.raises(ValueError, match="backend=cuda: no CUDA device on this machine"):
        runner(torch.nn.Identity(), "cuda", torch.zeros(1, 3, 8, 8))


def test_a_bf16_runner_runs_under_bf16_autocast_and_onnxruntime_refuses_it():
    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    x = torch.randn(2, 8)
    assert runner(model, "pytorch", x)().dtype == torch.float32
    assert runner(model, "pytorch", x, precision="bf16")().dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision=bf16 on onnxruntime: the exported models run in fp32 there"):
        runner(model, "onnxruntime", x, onnx_file="m.onnx", precision="bf16")
    with pytest.raises(ValueError, match=r"precision=fp16: allowed \['fp32', 'bf16'\]"):
        runner(model, "pytorch", x, precision="fp16")
