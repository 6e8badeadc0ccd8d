"""Will the training step fit on this GPU? Said in one line before a run starts, not as an
out-of-memory error minutes into it: a short probe (a forward and backward pass of the largest
subnet at two small batches) gives the step's memory as fixed + per-image bytes, which is linear
in the batch, and the optimizer's state is added (AdamW keeps two fp32 tensors per parameter).
When the batch does not fit, the line names the batch that would, and what activation
checkpointing would need."""

from __future__ import annotations

import contextlib
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

HEADROOM = 0.92  # of the device's memory: the allocator's fragmentation and the CUDA context


@dataclass(frozen=True)
class StepMemory:
    """Bytes a training step holds at its peak: `fixed` (weights, gradients, optimizer state) plus
    `per_image` times the batch (activations)."""

    fixed: float
    per_image: float

    @classmethod
    def fit(cls, peaks: dict[int, float], optimizer_bytes: float = 0.0) -> StepMemory:
        """From the measured peaks at two (or more) batches: the least-squares line."""
        if len(peaks) < 2:
            raise ValueError("StepMemory.fit: needs the peaks at two batches at least")
        slope, intercept = statistics.linear_regression(list(peaks), list(peaks.values()))
        return cls(intercept + optimizer_bytes, max(slope, 0.0))

    def at(self, batch: int) -> float:
        return self.fixed + self.per_image * batch

    def largest_batch(self, budget: float) -> int:
        return max(0, int((budget - self.fixed) // self.per_image)) if self.per_image > 0 else 1 << 30


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(plain: StepMemory, batch: int, total: float, device: str,
               checkpointed: StepMemory | None = None, where: str = "data.batch_size") -> None:
    """One clear line when the step at `batch` needs more than this device holds."""
    budget = HEADROOM * total
    need = plain.at(batch)
    if need <= budget:
        return
    hint = f"{where}={plain.largest_batch(budget)} fits"
    if checkpointed is not None:
        with_ckpt = checkpointed.at(batch)
        hint += (f", or model.net.grad_checkpointing=true ({gib(with_ckpt)} at {where}={batch}"
                 f"{'' if with_ckpt <= budget else f'; still too much: {where}={checkpointed.largest_batch(budget)} fits with it'})")
    raise ValueError(f"{where}={batch}: the training step needs about {gib(need)} per device "
                     f"({gib(plain.fixed)} weights, gradients and optimizer state + {gib(plain.per_image)} per image), "
                     f"{device} has {gib(total)} ({HEADROOM:.0%} usable): {hint}; or more devices")


def probe(model: torch.nn.Module, image_size: int, in_chans: int, device: torch.device,
          autocast: Callable[[], contextlib.AbstractContextManager], batches: tuple[int, int] = (2, 4)) -> StepMemory:
    """The step's memory on a CUDA device from forward and backward passes at two small batches."""
    model = model.to(device).train()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    peaks = {}
    for batch in batches:
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        x = torch.randn(batch, in_chans, image_size, image_size, device=device)
        with autocast():
            loss = model(x).float().mean()
        loss.backward()
        torch.cuda.synchronize(device)
        peaks[batch] = float(torch.cuda.max_memory_allocated(device))
        del x, loss
    model.zero_grad(set_to_none=True)
    return StepMemory.fit(peaks, optimizer_bytes=8.0 * params)
