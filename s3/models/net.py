"""The network's settings beside its architecture (`model.net` in conf/model/*.yaml), typed once:
the models are built from it, and the cost model and the constraint checks read the same values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from s3.options import Options


@dataclass(frozen=True)
class NetConfig(Options):
    """`img_size` / `patch_size`: a standalone model's input geometry (a supernet takes its space's;
    None: the model's default). `head_dim`: the Q-K-V width of one head (S3: 32).
    `grad_checkpointing`: recompute blocks in the backward pass instead of keeping their
    activations, in every stage (true) or in the stages listed (0-based, e.g. [0, 1]: the large grids)."""

    GROUP: ClassVar[str] = "net"
    POSITIVE: ClassVar[frozenset[str]] = frozenset({"num_classes", "head_dim", "in_chans"})

    num_classes: int = 1000
    head_dim: int = 32
    in_chans: int = 3
    drop_path_rate: float = 0.1
    img_size: int | None = None
    patch_size: int | None = None
    grad_checkpointing: bool | list[int] = False

    def _check(self, name: str, value, default) -> None:
        if name != "grad_checkpointing":
            return super()._check(name, value, default)
        ok = isinstance(value, bool) or (isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))
        if not ok:
            raise ValueError(f"model.net.grad_checkpointing={value!r}: must be true, false or a list of stage "
                             f"indices (0-based, e.g. [0, 1])")

    def checkpointed_stages(self, num_stages: int) -> list[int]:
        """The stages whose blocks are recomputed in the backward pass."""
        value = self.grad_checkpointing
        if isinstance(value, bool):
            return list(range(num_stages)) if value else []
        bad = [s for s in value if s >= num_stages]
        if bad:
            raise ValueError(f"model.net.grad_checkpointing={list(value)}: stage {bad[0]} does not exist; "
                             f"the model has stages 0-{num_stages - 1}")
        return sorted(set(value))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.drop_path_rate >= 1:
            raise ValueError(f"model.net.drop_path_rate={self.drop_path_rate}: must be in [0, 1)")

    def model_kwargs(self) -> dict:
        """What `Supernet` / `S3Transformer` take, the geometry left out where it is None."""
        kwargs = {"num_classes": self.num_classes, "head_dim": self.head_dim, "in_chans": self.in_chans,
                  "drop_path_rate": self.drop_path_rate}
        return kwargs | {k: v for k, v in (("img_size", self.img_size), ("patch_size", self.patch_size)) if v}

    def cost_kwargs(self) -> dict:
        """What the cost model (`count_params`, `count_macs`) and `Constraints` take besides the
        input geometry."""
        return {"num_classes": self.num_classes, "in_chans": self.in_chans, "head_dim": self.head_dim}
