"""Weight-entangled layers: allocated at their largest size, they run a slice of their weights.

Every parameter is described by a *factorisation* of its axes, e.g. the qkv weight
(3*Hq, C) is ((3, Hq), (C,)): three blocks q/k/v of Hq rows each, times C columns. A subnet keeps
the leading `k` entries of every factor (or the centred ones, for relative-position tables), so
one rule gives the forward slice, the standalone weights of `extract`, and the overlap copied when a
new supernet inherits an old one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Factors = tuple[tuple[int, ...], ...]


def _flat(f: Factors) -> list[int]:
    return [n for axis in f for n in axis]


def _window(full: Factors, keep: Factors, centered: frozenset[int]) -> tuple[slice, ...]:
    out = []
    for i, (n, k) in enumerate(zip(_flat(full), _flat(keep))):
        if k > n:
            raise ValueError(f"slice of size {k} requested from a factor of size {n}")
        start = (n - k) // 2 if i in centered else 0
        out.append(slice(start, start + k))
    return tuple(out)


def take(t: Tensor, full: Factors, keep: Factors, centered: frozenset[int] = frozenset()) -> Tensor:
    """The slice `keep` of tensor `t` factorised as `full` (differentiable; `t` itself if equal)."""
    if full == keep:
        return t
    sliced = t.reshape(_flat(full))[_window(full, keep, centered)]
    return sliced.reshape([math.prod(axis) for axis in keep])


class Elastic(nn.Module):
    """Base of the weight-entangled layers.

    Subclasses define `factors(dims)` (the factorisation of each own parameter for the given
    dims), `full_dims` (the allocated dims) and call `set_active(*dims)` to pick a subnet.
    """

    centered: frozenset[int] = frozenset()

    def factors(self, *dims: int) -> Mapping[str, Factors]:
        raise NotImplementedError

    def _init_elastic(self, *full_dims: int) -> None:
        self.full_dims = tuple(full_dims)
        self._full = dict(self.factors(*full_dims))
        self.set_active(*full_dims)

    def set_active(self, *dims: int) -> None:
        dims = tuple(dims)
        if len(dims) != len(self.full_dims) or any(d < 1 or d > f for d, f in zip(dims, self.full_dims)):
            raise ValueError(
                f"{type(self).__name__}: active dims {dims} must be positive and within the allocated {self.full_dims}"
            )
        self.active_dims = dims
        self._keep = None if dims == self.full_dims else dict(self.factors(*dims))

    def sliced(self, name: str) -> Tensor:
        """The active slice of own parameter `name` (the parameter itself when nothing is cut)."""
        p = getattr(self, name)
        if self._keep is None:
            return p
        return take(p, self._full[name], self._keep[name], self.centered)

    def export(self) -> dict[str, Tensor]:
        """Own parameters, sliced to the active dims, as a standalone layer would hold them."""
        return {name: self.sliced(name).detach().clone() for name in self._full}

    @torch.no_grad()
    def copy_overlap(self, other: Elastic) -> None:
        """Copy every overlapping slice of `other`'s parameters (the rest keeps its init)."""
        for name, full in self._full.items():
            theirs = other._full[name]
            a, b = _flat(full), _flat(theirs)
            if len(a) != len(b):
                raise ValueError(f"{type(self).__name__}.{name}: cannot copy from factors {theirs} into {full}")
            overlap = tuple((min(x, y),) for x, y in zip(a, b))
            mine = getattr(self, name).view(a)[_window(tuple((n,) for n in a), overlap, self.centered)]
            mine.copy_(getattr(other, name).view(b)[_window(tuple((n,) for n in b), overlap, self.centered)])

    def extra_repr(self) -> str:
        active = "" if self.active_dims == self.full_dims else f", active={self.active_dims}"
        return f"dims={self.full_dims}{active}"


class ElasticLinear(Elastic):
    """Linear layer over `in_groups` x `in_features` inputs and `out_groups` x `out_features`
    outputs; slicing keeps the leading features of every group (qkv: 3 output groups; patch
    merging: 4 input groups)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, in_groups: int = 1, out_groups: int = 1):
        super().__init__()
        self.in_groups, self.out_groups = in_groups, out_groups
        self.weight = nn.Parameter(torch.empty(out_groups * out_features, in_groups * in_features))
        self.bias = nn.Parameter(torch.zeros(out_groups * out_features)) if bias else None
        self._init_elastic(in_features, out_features)

    def factors(self, in_features: int, out_features: int) -> dict[str, Factors]:
        out = ((self.out_groups, out_features), (self.in_groups, in_features))
        f = {"weight": out}
        if self.bias is not None:
            f["bias"] = ((self.out_groups, out_features),)
        return f

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.sliced("weight"), None if self.bias is None else self.sliced("bias"))

    def extra_repr(self) -> str:
        groups = f", in_groups={self.in_groups}" if self.in_groups > 1 else ""
        groups += f", out_groups={self.out_groups}" if self.out_groups > 1 else ""
        return f"{super().extra_repr()}, bias={self.bias is not None}{groups}"


class ElasticLayerNorm(Elastic):
    """LayerNorm over `groups` x `dim` channels, normalising the active channels only."""

    def __init__(self, dim: int, groups: int = 1, eps: float = 1e-5):
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(groups * dim))
        self.bias = nn.Parameter(torch.zeros(groups * dim))
        self._init_elastic(dim)

    def factors(self, dim: int) -> dict[str, Factors]:
        return {"weight": ((self.groups, dim),), "bias": ((self.groups, dim),)}

    def forward(self, x: Tensor) -> Tensor:
        w = self.sliced("weight")
        return F.layer_norm(x, w.shape, w, self.sliced("bias"), self.eps)


class ElasticPatchConv(Elastic):
    """The patch-embedding convolution (kernel = stride = patch) with elastic output channels."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.in_chans, self.patch_size = in_chans, patch_size
        self.weight = nn.Parameter(torch.empty(embed_dim, in_chans, patch_size, patch_size))
        self.bias = nn.Parameter(torch.zeros(embed_dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default
        bound = 1 / math.sqrt(in_chans * patch_size * patch_size)
        nn.init.uniform_(self.bias, -bound, bound)
        self._init_elastic(embed_dim)

    def factors(self, embed_dim: int) -> dict[str, Factors]:
        p = self.patch_size
        return {"weight": ((embed_dim,), (self.in_chans,), (p,), (p,)), "bias": ((embed_dim,),)}

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.sliced("weight"), self.sliced("bias"), stride=self.patch_size)
