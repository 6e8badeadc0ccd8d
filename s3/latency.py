"""Latency measured the way a drifting machine needs: the things compared run in turns (round
robin: every one `repeats` passes per round, `rounds` rounds), so a slow minute slows them all
alike, and each gets the median of its rounds with their spread. The backend (PyTorch eager on the
CPU, onnxruntime on the CPU, CUDA), the batch and the threads are named in every row."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch

BACKENDS = ("pytorch", "onnxruntime", "cuda")


@dataclass(frozen=True)
class Timing:
    """Milliseconds per forward pass of one model on one backend: the median of the rounds, and
    the fastest and slowest round."""

    name: str
    backend: str
    batch: int
    threads: int
    median_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, name: str, backend: str, batch: int, rounds: Sequence[float]) -> Timing:
        """From the per-round times `interleaved` gives, with this process's threads."""
        return cls(name, backend, batch, torch.get_num_threads(), statistics.median(rounds), min(rounds), max(rounds))

    def to_row(self) -> dict:
        return asdict(self)


def interleaved(runners: Mapping[str, Callable[[], object]], repeats: int, rounds: int,
                clock: Callable[[], float] = time.perf_counter,
                synchronize: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Milliseconds per call of each runner in each round, the runners taking turns. One warm-up
    call each first; `synchronize` (CUDA) closes every timed stretch."""
    if repeats < 1 or rounds < 1:
        raise ValueError(f"latency: repeats={repeats} and rounds={rounds} must be >= 1")
    for run in runners.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            if synchronize:
                synchronize()
            start = clock()
            for _ in range(repeats):
                run()
            if synchronize:
                synchronize()
            times[name].append((clock() - start) / repeats * 1e3)
    return times


PRECISIONS = ("fp32", "bf16")


def runner(model: torch.nn.Module, backend: str, images: torch.Tensor, onnx_file: str | None = None,
           precision: str = "fp32") -> Callable:
    """One forward pass of `model` on `images`, on `backend` (`precision` bf16: under bf16 autocast);
    one clear error for a backend this machine cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend}: allowed {list(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision}: allowed {list(PRECISIONS)}")
    if backend == "onnxruntime" and precision != "fp32":
        raise ValueError(f"precision={precision} on onnxruntime: the exported models run in fp32 there; allowed: fp32")
    if backend == "onnxruntime":
        if onnx_file is None:
            raise ValueError("backend=onnxruntime: needs the model's ONNX file (export.py format=onnx)")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # side by side with PyTorch: the same threads
        session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        array = images.cpu().numpy()
        return lambda: session.run(None, {"images": array})
    if backend == "cuda" and not torch.cuda.is_available():
        raise ValueError("backend=cuda: no CUDA device on this machine; allowed here: 'pytorch', 'onnxruntime'")
    device = "cuda" if backend == "cuda" else "cpu"
    model, x = model.eval().to(device), images.to(device)

    def forward():
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            return model(x)

    return forward


def measure(models: Mapping[str, torch.nn.Module | str], backend: str, batch: int, input_size: Sequence[int],
            repeats: int = 10, rounds: int = 5) -> list[Timing]:
    """The latency of each model (an `nn.Module`, or for onnxruntime its ONNX file) at `batch`,
    measured in turns on `backend` with this process's threads."""
    images = torch.randn(batch, *input_size)
    runners = {name: runner(m, backend, images, onnx_file=m) if isinstance(m, str) else runner(m, backend, images)
               for name, m in models.items()}
    sync = torch.cuda.synchronize if backend == "cuda" else None
    times = interleaved(runners, repeats, rounds, synchronize=sync)
    return [Timing.of(name, backend, batch, t) for name, t in times.items()]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """PyTorch's intra-op threads set to `threads` inside the block (None: left as they are)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
