"""The default precision of CPU runs: bf16 autocast where the CPU computes bf16 natively (AMX or
AVX512-BF16, as on recent Xeon nodes), fp32 elsewhere, where emulated bf16 only costs time.

`conf/trainer/cpu.yaml` asks for `${cpu_precision:}`; `trainer.precision=32-true` or
`bf16-mixed` forces either. The resolved value is what `config.yaml` records.
"""

from __future__ import annotations

import torch
from omegaconf import OmegaConf


def cpu_supports_bf16() -> bool:
    """torch's own CPU feature queries (private, hence looked up defensively)."""
    return any(getattr(torch.cpu, q, lambda: False)() for q in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def cpu_precision() -> str:
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("cpu_precision"):
        OmegaConf.register_new_resolver("cpu_precision", cpu_precision)
