"""Latency predicted from a per-component lookup table, the hardware-aware NAS way (HAT,
once-for-all): an arch's forward pass is a sum of components whose cost depends on a few numbers
each (a block's attention half on its stage's grid, its MLP half, a token-layout gather, the stem,
a merge, the head), so timing every distinct component once on the deployment backend prices every
arch of the space. A component the table lacks (a space search that moved a choice beyond the
space the table was timed for) is priced by a least-squares fit of its kind's entries on the work it
does (matmul MACs, attention MACs, tokens x channels, windows). What the table's sum misses as a
whole (per-call dispatch, caches warmed by the previous component) a two-number linear fit on a few
whole archs measured the same way corrects.

The table is built from the real modules (`WindowAttention`, `Mlp`, `WindowLayouts`, `PatchMerging`) at the batch,
threads and backend it predicts for, and cached in a JSON file keyed by all of them and the space.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import random
import statistics
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from s3.io import atomic_write_text, read_json
from s3.latency import BACKENDS, interleaved, runner
from s3.models.elastic import ElasticLayerNorm, ElasticLinear, ElasticPatchConv
from s3.models.transformer import Mlp, PatchMerging, S3Transformer, WindowAttention, WindowLayouts
from s3.space import Arch, Geometry, SearchSpace

log = logging.getLogger(__name__)

# Backends the table is built on: each component is a module timed in place (PyTorch eager on the
# CPU, CUDA) or exported to its own ONNX graph and timed in an onnxruntime session.
PREDICTOR_BACKENDS = ("pytorch", "cuda", "onnxruntime")  # onnxruntime: each component exported on its own

Component = tuple  # ("attn", stage, dim, heads, window, shifted) | ("mlp", stage, dim, hidden) | ...


def machine() -> str:
    """What a latency belongs to besides the backend: the CPU model (and the GPU on CUDA) and torch."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f" | {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}{gpu} | torch {torch.__version__}"


@dataclass(frozen=True)
class NetGeometry:
    """Everything besides the arch that decides a forward pass's cost."""

    img_size: int
    patch_size: int
    in_chans: int = 3
    num_classes: int = 1000
    head_dim: int = 32

    @property
    def grids(self) -> tuple[int, ...]:
        return Geometry(self.img_size, self.patch_size).grids


def components(arch: Arch, geometry: NetGeometry) -> Counter:
    """The components one forward pass of `arch` runs, with their counts (as `Stage.forward_blocks`
    runs them: a gather wherever consecutive blocks attend in different layouts, and one back)."""
    g = Geometry(geometry.img_size, geometry.patch_size, arch.num_stages)
    parts: Counter = Counter({("stem", arch.embed_dims[0]): 1, ("head", arch.embed_dims[-1]): 1})
    for i in range(arch.num_stages):
        c, layout = arch.embed_dims[i], None
        for j, (r, h, w) in enumerate(arch.blocks(i)):
            window, shift = g.window(w, i), (g.shift(w, i) if j % 2 else 0)
            if (window, shift) != layout:
                parts[("move", i, c)] += 1
                layout = (window, shift)
            parts[("attn", i, c, h, window, bool(shift))] += 1
            parts[("mlp", i, c, int(c * r))] += 1
        if layout is not None:
            parts[("move", i, c)] += 1
        if i + 1 < arch.num_stages:
            parts[("merge", i, c, arch.embed_dims[i + 1])] += 1
    return parts


def space_components(space: SearchSpace, geometry: NetGeometry) -> list[Component]:
    """Every component some arch of `space` runs, in a fixed order."""
    g, found = space.geometry, set()
    for i, st in enumerate(space.stages):
        for c in st.embed_dim:
            found.add(("move", i, c))
            for w in st.window_size:
                for h in st.num_heads:
                    found.add(("attn", i, c, h, g.window(w, i), False))
                    if max(st.depth) > 1 and g.shift(w, i):
                        found.add(("attn", i, c, h, g.window(w, i), True))
            found.update(("mlp", i, c, int(c * r)) for r in st.mlp_ratio)
            if i + 1 < space.num_stages:
                found.update(("merge", i, c, d) for d in space.stages[i + 1].embed_dim)
    found.update(("stem", c) for c in space.stages[0].embed_dim)
    found.update(("head", c) for c in space.stages[-1].embed_dim)
    return sorted(found, key=lambda k: (k[0], *map(float, k[1:])))


def component_features(key: Component, geometry: NetGeometry, batch: int) -> list[float]:
    """The work a component does, the regressors of its kind's fallback fit (the last one: 1)."""
    kind, grids, hd = key[0], geometry.grids, geometry.head_dim
    if kind == "stem":
        c, n = key[1], batch * grids[0] ** 2
        return [n * c * geometry.in_chans * geometry.patch_size ** 2, n * c, 1.0]
    if kind == "head":
        c = key[1]
        return [batch * c * geometry.num_classes, batch * grids[-1] ** 2 * c, 1.0]
    i, c = key[1], key[2]
    n = batch * grids[i] ** 2
    if kind == "move":
        return [n * c, 1.0]
    if kind == "merge":
        return [n * c * key[3], n * c, 1.0]
    if kind == "mlp":
        return [n * c * key[3], n * (c + key[3]), 1.0]
    heads, window = key[3], key[4]
    return [n * c * heads * hd, n * window * window * heads * hd, n * c, n * window * window * heads,
            n / (window * window) * heads, 1.0]


class ComponentModule(nn.Module):
    """One component as a module on its own input: what the table times."""

    def __init__(self, key: Component, geometry: NetGeometry, batch: int):
        super().__init__()
        kind, grids, self.key = key[0], geometry.grids, key
        g = Geometry(geometry.img_size, geometry.patch_size, len(grids))
        if kind == "stem":
            c = key[1]
            self.proj, self.norm = ElasticPatchConv(geometry.in_chans, c, geometry.patch_size), ElasticLayerNorm(c)
            self.input = torch.randn(batch, geometry.in_chans, geometry.img_size, geometry.img_size)
        elif kind == "head":
            c = key[1]
            self.norm, self.fc = ElasticLayerNorm(c), ElasticLinear(c, geometry.num_classes)
            self.input = torch.randn(batch, grids[-1], grids[-1], c)
        elif kind == "merge":
            _, i, c, d = key
            self.merge = PatchMerging(c, d)
            self.input = torch.randn(batch, grids[i], grids[i], c)
        else:
            i, c = key[1], key[2]
            self.input = torch.randn(batch, grids[i] * grids[i], c)
            self.norm = ElasticLayerNorm(c)
            if kind == "move":
                self.layout = (grids[i], 0)  # a gather costs the same whatever its order
                self.layouts = WindowLayouts(grids[i], {self.layout})
            elif kind == "attn":
                _, _, _, heads, window, shifted = key
                self.layout = (window, g.shift(window, i) if shifted else 0)
                self.layouts = WindowLayouts(grids[i], {self.layout})
                self.attn = WindowAttention(c, heads, geometry.head_dim, window, [window])
                self.attn.set_active(window, heads, c)
            else:
                self.mlp = Mlp(c, key[3])
        for name, p in self.named_parameters():  # Swin's init: no denormals or NaNs to time
            if p.dim() > 1 or name.endswith("bias_table"):
                nn.init.trunc_normal_(p, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind = self.key[0]
        if kind == "stem":
            return self.norm(self.proj(x).permute(0, 2, 3, 1))
        if kind == "head":
            return self.fc(self.norm(x).mean(dim=(1, 2)))
        if kind == "merge":
            return self.merge(x)
        if kind == "move":
            return self.layouts.move(x, None, self.layout)
        if kind == "attn":  # a block's first half: norm, window attention, residual
            B, L, C = x.shape
            w = self.layout[0]
            return x + self.attn(self.norm(x).view(-1, w * w, C), self.layouts.mask(self.layout)).view(B, L, C)
        return x + self.mlp(self.norm(x))  # its second half


@dataclass
class LatencyPredictor:
    """Predicted milliseconds of one forward pass of an arch at `batch` on `backend`: the sum of its
    components' table entries, times `scale`, plus `offset` (fitted on whole archs)."""

    backend: str
    batch: int
    threads: int
    machine: str
    table: dict[Component, float]
    scale: float = 1.0
    offset: float = 0.0
    fit: list[dict] = field(default_factory=list)  # the whole archs the scale and offset came from
    precision: str = "fp32"
    _fallback: dict = field(default_factory=dict, repr=False)  # kind -> least-squares coefficients

    def component_ms(self, key: Component, geometry: NetGeometry) -> float:
        """The table's entry, or the kind's fallback fit where the table has none."""
        if key in self.table:
            return self.table[key]
        kind = key[0]
        if kind not in self._fallback:
            self._fallback[kind] = self.fit_kind(kind, geometry)
        x = component_features(key, geometry, self.batch)
        return max(0.0, sum(a * b for a, b in zip(self._fallback[kind], x)))

    def fit_kind(self, kind: str, geometry: NetGeometry, exclude: Iterable[Component] = ()) -> list[float]:
        """Least-squares coefficients of `component_features` -> ms over the table's entries of `kind`."""
        import numpy as np

        exclude = set(exclude)
        keys = [k for k in self.table if k[0] == kind and k not in exclude]
        if not keys:
            raise KeyError(f"the latency table has no {kind!r} entry to price {kind} components from")
        x = np.array([component_features(k, geometry, self.batch) for k in keys], dtype=np.float64)
        y = np.array([self.table[k] for k in keys])
        scale = np.abs(x).max(axis=0)
        scale[scale == 0] = 1.0
        coef = np.linalg.lstsq(x / scale, y, rcond=None)[0] / scale
        return coef.tolist()

    def table_sum(self, arch: Arch, geometry: NetGeometry) -> float:
        return sum(self.component_ms(k, geometry) * n for k, n in components(arch, geometry).items())

    def predict(self, arch: Arch, geometry: NetGeometry) -> float:
        return self.scale * self.table_sum(arch, geometry) + self.offset

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def build(cls, space: SearchSpace, geometry: NetGeometry, backend: str, batch: int,
              fit_archs: Iterable[Arch] = (), repeats: int = 5, rounds: int = 5,
              progress: Callable[[str], None] = log.info, precision: str = "fp32") -> LatencyPredictor:
        """Times every component of `space` (in turns, median of rounds), then the `fit_archs` whole,
        and fits scale and offset by least squares (none given: the table's sum as it is)."""
        if backend not in PREDICTOR_BACKENDS:
            raise ValueError(f"latency_ms.backend={backend}: allowed {list(PREDICTOR_BACKENDS)}")
        keys = space_components(space, geometry)
        progress(f"latency table: timing {len(keys)} components at batch {batch} on {backend} "
                 f"({torch.get_num_threads()} threads, {precision})")
        table = {}
        for start in range(0, len(keys), 64):  # in turns within groups: a group's modules stay small in memory
            group = keys[start:start + 64]
            parts = {k: ComponentModule(k, geometry, batch) for k in group}
            with tempfile.TemporaryDirectory() as work:
                runners = {k: backend_runner(p, backend, p.input, work, precision) for k, p in parts.items()}
                times = interleaved(runners, repeats, rounds, synchronize=_sync(backend))
            table.update({k: statistics.median(t) for k, t in times.items()})
            progress(f"latency table: {len(table)}/{len(keys)} components timed")
        predictor = cls(backend, batch, torch.get_num_threads(), machine(), table, precision=precision)
        fit_archs = list(dict.fromkeys(fit_archs))
        if fit_archs:
            progress(f"latency table: timing {len(fit_archs)} whole archs to calibrate it")
            measured = measure_archs(fit_archs, geometry, backend, batch, repeats, rounds, precision=precision)
            predictor.calibrate([(a, measured[a]) for a in fit_archs], geometry)
        return predictor

    def calibrate(self, measured: list[tuple[Arch, float]], geometry: NetGeometry) -> None:
        """Least-squares scale and offset of the table's sums against whole-arch times."""
        xs = [self.table_sum(a, geometry) for a, _ in measured]
        ys = [ms for _, ms in measured]
        if len(set(xs)) > 1:
            self.scale, self.offset = statistics.linear_regression(xs, ys)
        else:  # one point (or equal sums): the ratio, through the origin
            self.scale, self.offset = statistics.fmean(ys) / statistics.fmean(xs), 0.0
        self.fit = [{"arch": a.to_dict(), "ms": ms} for a, ms in measured]

    # -- the cache --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"backend": self.backend, "batch": self.batch, "threads": self.threads, "machine": self.machine,
                "precision": self.precision, "scale": self.scale, "offset": self.offset, "fit": self.fit,
                "table": [[list(k), ms] for k, ms in self.table.items()]}

    @classmethod
    def from_dict(cls, d: Mapping) -> LatencyPredictor:
        table = {tuple(k): ms for k, ms in d["table"]}
        return cls(d["backend"], d["batch"], d["threads"], d["machine"], table, d["scale"], d["offset"], d["fit"],
                   d.get("precision", "fp32"))


def cache_key(space: SearchSpace, geometry: NetGeometry, backend: str, batch: int, precision: str = "fp32") -> str:
    """The predictor's identity: machine, backend, threads, batch, precision, space and geometry."""
    ident = {"machine": machine(), "backend": backend, "threads": torch.get_num_threads(), "batch": batch,
             "space": space.to_dict(), "geometry": geometry.__dict__, "version": 1,
             **({"precision": precision} if precision != "fp32" else {})}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(cache_dir: str | Path, space: SearchSpace, geometry: NetGeometry, backend: str, batch: int,
               precision: str = "fp32") -> Path:
    """Where the predictor of this machine, backend, threads, batch, precision, space and geometry is cached."""
    key = cache_key(space, geometry, backend, batch, precision)
    return Path(cache_dir) / f"latency-{backend}-{precision}-b{batch}-t{torch.get_num_threads()}-{key}.json"


def load_or_build(cache_dir: str | Path, space: SearchSpace, geometry: NetGeometry, backend: str, batch: int,
                  fit_archs: int = 16, seed: int = 0, accept: Callable[[Arch], bool] = lambda a: True,
                  progress: Callable[[str], None] = log.info, precision: str = "fp32") -> tuple[LatencyPredictor, Path]:
    """The predictor from `cache_dir` when one with this key exists there, else built (its table, and
    `fit_archs` whole archs drawn from `space` that `accept` lets through) and saved atomically."""
    path = cache_path(cache_dir, space, geometry, backend, batch, precision)
    if path.is_file():
        data = read_json(path, "latency predictor", ("table", "scale", "offset"),
                         "delete it to time the table again")
        progress(f"latency predictor: {path} (cached)")
        return LatencyPredictor.from_dict(data), path
    archs = draw_archs(space, fit_archs, seed, accept)
    predictor = LatencyPredictor.build(space, geometry, backend, batch, archs, progress=progress, precision=precision)
    atomic_write_text(path, json.dumps(predictor.to_dict()))
    progress(f"latency predictor: saved {path}")
    return predictor, path


def draw_archs(space: SearchSpace, n: int, seed: int, accept: Callable[[Arch], bool] = lambda a: True,
               tries: int = 100_000) -> list[Arch]:
    """`n` distinct archs of `space` drawn uniformly that `accept` lets through (fewer if it is strict)."""
    rng, archs = random.Random(f"s3-latency:{seed}"), []
    for _ in range(tries):
        if len(archs) >= n:
            break
        a = space.sample(rng)
        if a not in archs and accept(a):
            archs.append(a)
    return archs


def time_arch_groups(archs: Iterable[Arch], geometry: NetGeometry, backend: str, batch: int, repeats: int = 5,
                     rounds: int = 5, group: int = 8, precision: str = "fp32") -> Iterator[dict[Arch, list[float]]]:
    """Each arch's whole forward pass (a standalone model), in turns within groups of `group`: per
    group, every arch's milliseconds per call in each round."""
    archs = list(archs)
    images = torch.randn(batch, geometry.in_chans, geometry.img_size, geometry.img_size)
    for start in range(0, len(archs), group):
        models = {a: standalone(a, geometry) for a in archs[start:start + group]}
        with tempfile.TemporaryDirectory() as work:
            yield interleaved({a: backend_runner(m, backend, images, work, precision) for a, m in models.items()},
                              repeats, rounds, synchronize=_sync(backend))


def measure_archs(archs: Iterable[Arch], geometry: NetGeometry, backend: str, batch: int, repeats: int = 5,
                  rounds: int = 5, group: int = 8, precision: str = "fp32") -> dict[Arch, float]:
    """Each arch's median milliseconds per forward pass (`time_arch_groups`)."""
    return {a: statistics.median(t) for times in time_arch_groups(archs, geometry, backend, batch, repeats, rounds,
                                                                   group, precision) for a, t in times.items()}


def backend_runner(module: nn.Module, backend: str, images: torch.Tensor, work: str | Path,
                   precision: str = "fp32") -> Callable:
    """One forward pass of `module` on `images` on `backend`; for onnxruntime the module is exported
    first (the TorchScript exporter, as export.py does) into the directory `work`."""
    if backend != "onnxruntime":
        return runner(module, backend, images, precision=precision)
    import warnings

    path = Path(work) / f"{uuid.uuid4().hex}.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the trace's constant-shape warnings: a fixed batch is what is timed
        torch.onnx.export(module.eval(), (images,), str(path), input_names=["images"], output_names=["out"],
                          dynamo=False)
    return runner(module, backend, images, onnx_file=str(path))


def standalone(arch: Arch, geometry: NetGeometry) -> S3Transformer:
    return S3Transformer(arch, geometry.img_size, geometry.patch_size, geometry.in_chans, geometry.num_classes,
                         0.0, geometry.head_dim).eval()


def _sync(backend: str):
    return torch.cuda.synchronize if backend == "cuda" else None


__all__ = ["BACKENDS", "PREDICTOR_BACKENDS", "ComponentModule", "LatencyPredictor", "NetGeometry", "backend_runner", "cache_path", "component_features", "components", "draw_archs",
           "load_or_build", "machine", "measure_archs", "time_arch_groups", "space_components", "standalone"]
