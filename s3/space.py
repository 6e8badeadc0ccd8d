"""Architectures (`Arch`) and the search spaces they are drawn from (`SearchSpace`).

An `Arch` is one Swin-like hierarchical transformer: per stage a depth and an embed dim, per block
an MLP ratio, a number of heads (Q-K-V dim = heads * head_dim) and a window size. It reads and
writes the official S3 YAML schema (EMBED_DIM, DEPTHS, NUM_HEADS, MLP_RATIO, WINDOW_SIZE).

A `SearchSpace` holds, per stage, an ordered list of choices for each of the five dimensions,
plus the input geometry (`Geometry`: image and patch size) that decides which window sizes are legal.
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
import yaml

from s3.io import write_yaml

DIMENSIONS = ("depth", "embed_dim", "mlp_ratio", "num_heads", "window_size")
BLOCK_DIMENSIONS = ("mlp_ratio", "num_heads", "window_size")
OFFICIAL_KEYS = {
    "DEPTHS": "depths",
    "EMBED_DIM": "embed_dims",
    "MLP_RATIO": "mlp_ratios",
    "NUM_HEADS": "num_heads",
    "WINDOW_SIZE": "window_sizes",
}

Generator = Union[torch.Generator, random.Random]


@dataclass(frozen=True)
class Geometry:
    """The input geometry: image size, patch size and the number of stages decide every stage's
    token grid (each merging layer halves it) and the windows legal there (a divisor of the grid,
    or any window covering it, which becomes global and unshifted). The space, the models, the cost
    model, the constraints and the space shift all ask this one object."""

    img_size: int = 224
    patch_size: int = 4
    num_stages: int = 4

    def __post_init__(self) -> None:
        if self.patch_size < 1:
            raise ValueError(f"patch_size={self.patch_size}: must be a positive integer")
        factor = self.patch_size * 2 ** (self.num_stages - 1)
        if self.img_size < factor or self.img_size % factor:
            raise ValueError(
                f"img_size={self.img_size}: must be a positive multiple of patch_size * 2^(stages-1) = "
                f"{self.patch_size} * {2 ** (self.num_stages - 1)} = {factor} (e.g. {factor * max(1, self.img_size // factor)})"
            )

    @functools.cached_property
    def grids(self) -> tuple[int, ...]:
        """Token-grid side length of every stage (asked per block by the cost model: cached)."""
        return tuple(self.img_size // self.patch_size // 2**i for i in range(self.num_stages))

    def legal_windows(self, stage: int) -> list[int]:
        """The distinct windows of a stage in order: divisors of its grid, the grid itself last (global)."""
        grid = self.grids[stage]
        return [w for w in range(1, grid + 1) if grid % w == 0]

    def window(self, window: int, stage: int) -> int:
        """The window a block runs with: a window covering the whole grid is the grid."""
        return min(window, self.grids[stage])

    def may_shift(self, window: int, stage: int) -> bool:
        """Only a window smaller than the grid is shifted (a global one has nothing to shift to)."""
        return window < self.grids[stage]

    def shift(self, window: int, stage: int) -> int:
        """The cyclic shift of a shifted (odd) block: half its window, or 0 where it may not shift."""
        return self.window(window, stage) // 2 if self.may_shift(window, stage) else 0

    def is_legal(self, window: int, stage: int) -> bool:
        grid = self.grids[stage]
        return window >= grid or (window >= 1 and grid % window == 0)

    def check_window(self, window: int, stage: int, where: str) -> None:
        grid = self.grids[stage]
        if not self.is_legal(window, stage):
            raise ValueError(
                f"{where}: window_size={window} neither divides the stage resolution {grid} nor "
                f"covers it; legal: {self.legal_windows(stage)} or any value >= {grid}"
            )


def _read_yaml(path: str | Path, what: str, keys: list[str], parse):
    """An arch or space file: its mapping parsed by `parse`; anything else is one clear error
    naming the file (a directory, a missing or unreadable file, not a mapping, bad values)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} file {path} is a directory; give the YAML file in it")
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable YAML {what} file ({type(e).__name__}: "
                         f"{str(e).splitlines()[0]})") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping with keys {keys}, got {type(data).__name__}")
    try:
        return parse(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _choice(generator: Generator, options: Sequence):
    """One uniform draw from `options` with an explicit generator (never global state)."""
    if isinstance(generator, random.Random):  # first: torch's isinstance check is the slower one
        return options[generator.randrange(len(options))]
    if isinstance(generator, torch.Generator):
        return options[int(torch.randint(len(options), (1,), generator=generator))]
    raise TypeError(f"generator must be torch.Generator or random.Random, got {type(generator).__name__}")


@dataclass(frozen=True, order=True)
class Arch:
    """One subnet. Per-block tuples hold exactly `depths[i]` entries for stage i."""

    depths: tuple[int, ...]
    embed_dims: tuple[int, ...]
    mlp_ratios: tuple[tuple[float, ...], ...]
    num_heads: tuple[tuple[int, ...], ...]
    window_sizes: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        n = len(self.depths)
        if n == 0:
            raise ValueError("Arch.depths is empty: an architecture needs at least one stage")
        for name in ("embed_dims", "mlp_ratios", "num_heads", "window_sizes"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"Arch.{name} has {len(getattr(self, name))} stages but depths has {n}: {getattr(self, name)}"
                )
        for i, d in enumerate(self.depths):
            if d < 1:
                raise ValueError(f"Arch.depths[{i}]={d}: every stage needs depth >= 1")
            if self.embed_dims[i] < 1:
                raise ValueError(f"Arch.embed_dims[{i}]={self.embed_dims[i]}: must be >= 1")
            for name in ("mlp_ratios", "num_heads", "window_sizes"):
                blocks = getattr(self, name)[i]
                if len(blocks) != d:
                    raise ValueError(f"Arch.{name}[{i}] has {len(blocks)} entries for depth {d}: {blocks}")
            if min(self.num_heads[i]) < 1:
                raise ValueError(f"Arch.num_heads[{i}]={self.num_heads[i]}: heads must be >= 1")
            if min(self.mlp_ratios[i]) <= 0:
                raise ValueError(f"Arch.mlp_ratios[{i}]={self.mlp_ratios[i]}: ratios must be > 0")
            if min(self.window_sizes[i]) < 1:
                raise ValueError(f"Arch.window_sizes[{i}]={self.window_sizes[i]}: windows must be >= 1")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        depths: Iterable[int],
        embed_dims: Iterable[int],
        mlp_ratios: Iterable,
        num_heads: Iterable,
        window_sizes: Iterable,
    ) -> Arch:
        """Build from per-stage values; per-block entries may be a scalar (same for every block)
        or a list, of which only the first `depth` entries count (the official schema pads)."""
        def as_list(name: str, values, entries: str = "one entry per stage") -> list:
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                raise ValueError(f"{name}={values!r}: expected a list with {entries}")
            return list(values)

        def number(name: str, x, cast):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or (cast is int and x != int(x)):
                kind = "an integer" if cast is int else "a number"
                raise ValueError(f"{name}={x!r}: must be {kind}")
            return cast(x)

        depths = tuple(number(f"depths[{i}]", d, int) for i, d in enumerate(as_list("depths", depths)))
        embed_dims = tuple(number(f"embed_dims[{i}]", c, int) for i, c in enumerate(as_list("embed_dims", embed_dims)))

        def per_block(name: str, values, cast) -> tuple[tuple, ...]:
            values = as_list(name, values)
            if len(values) != len(depths):
                raise ValueError(f"{name} has {len(values)} stages but depths has {len(depths)}: {values}")
            out = []
            for i, (d, v) in enumerate(zip(depths, values)):
                if isinstance(v, (int, float)):
                    v = [v] * d
                v = as_list(f"{name}[{i}]", v, "one entry per block (or one number for all)")
                if len(v) < d:
                    raise ValueError(
                        f"{name}[{i}] lists {len(v)} blocks but the stage depth is {d}: {v}"
                    )
                out.append(tuple(number(f"{name}[{i}][{j}]", x, cast) for j, x in enumerate(v[:d])))
            return tuple(out)

        return cls(
            depths,
            embed_dims,
            per_block("mlp_ratios", mlp_ratios, float),
            per_block("num_heads", num_heads, int),
            per_block("window_sizes", window_sizes, int),
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Arch:
        """Accepts the official schema (upper-case keys) or this class's field names."""
        if all(k in d for k in OFFICIAL_KEYS):
            return cls.create(**{OFFICIAL_KEYS[k]: d[k] for k in OFFICIAL_KEYS})
        fields = tuple(OFFICIAL_KEYS.values())
        missing = [k for k in fields if k not in d]
        if missing:
            raise ValueError(
                f"architecture is missing {missing}; expected the official keys {list(OFFICIAL_KEYS)} "
                f"or {list(fields)}, got {sorted(d)}"
            )
        return cls.create(**{k: d[k] for k in fields})

    @classmethod
    def from_yaml(cls, path: str | Path) -> Arch:
        return _read_yaml(path, "architecture", list(OFFICIAL_KEYS), cls.from_dict)

    @classmethod
    def parse(cls, text: str) -> Arch:
        """The inverse of `str(arch)`: what logs and result tables hold, back as an Arch."""
        m = re.fullmatch(r"Arch\((.*)\)", text.strip())
        stages = m.group(1).split(" | ") if m else []
        fields = [re.fullmatch(r"d(\d+) c(\d+) r(\S+) h(\S+) w(\S+)", s) for s in stages]
        if not fields or not all(fields):
            raise ValueError(f"{text!r}: not an arch string, expected e.g. 'Arch(d2 c32 r4.0 h1 w4 | ...)'")

        def per_block(value: str, depth: int, cast) -> list:
            xs = [cast(v) for v in value.split("/")]
            return xs * depth if len(xs) == 1 else xs

        depths = [int(f.group(1)) for f in fields]
        return cls.create(depths, [int(f.group(2)) for f in fields],
                          [per_block(f.group(3), d, float) for f, d in zip(fields, depths)],
                          [per_block(f.group(4), d, int) for f, d in zip(fields, depths)],
                          [per_block(f.group(5), d, int) for f, d in zip(fields, depths)])

    def to_dict(self) -> dict[str, Any]:
        """The official schema (what `configs/S3-T.yaml` of the model zoo holds)."""
        return {
            "MLP_RATIO": [list(s) for s in self.mlp_ratios],
            "NUM_HEADS": [list(s) for s in self.num_heads],
            "EMBED_DIM": list(self.embed_dims),
            "DEPTHS": list(self.depths),
            "WINDOW_SIZE": [list(s) for s in self.window_sizes],
        }

    def to_yaml(self, path: str | Path) -> Path:
        return write_yaml(path, self.to_dict())

    # -- views ------------------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.depths)

    def blocks(self, stage: int) -> list[tuple[float, int, int]]:
        """(mlp_ratio, num_heads, window_size) of every block of `stage`."""
        return list(zip(self.mlp_ratios[stage], self.num_heads[stage], self.window_sizes[stage]))

    def values(self, stage: int, dimension: str) -> tuple:
        """All values `dimension` takes in `stage` (one for stage dims, one per block otherwise)."""
        if dimension == "depth":
            return (self.depths[stage],)
        if dimension == "embed_dim":
            return (self.embed_dims[stage],)
        return {"mlp_ratio": self.mlp_ratios, "num_heads": self.num_heads, "window_size": self.window_sizes}[
            dimension
        ][stage]

    def replace_stage(self, stage: int, **changes) -> Arch:
        """A copy with stage `stage` changed; keys are `depth`, `embed_dim` and the block dims
        (given as full per-block tuples)."""
        fields = {
            "depths": list(self.depths),
            "embed_dims": list(self.embed_dims),
            "mlp_ratios": list(self.mlp_ratios),
            "num_heads": list(self.num_heads),
            "window_sizes": list(self.window_sizes),
        }
        plural = {"depth": "depths", "embed_dim": "embed_dims", "mlp_ratio": "mlp_ratios",
                  "num_heads": "num_heads", "window_size": "window_sizes"}
        for k, v in changes.items():
            fields[plural[k]][stage] = v
        return Arch.create(**fields)

    def check_geometry(self, img_size: int, patch_size: int) -> Geometry:
        """This arch's geometry at this input size; raises if a window is illegal in its stage."""
        geometry = Geometry(img_size, patch_size, self.num_stages)
        for i in range(self.num_stages):
            for j, w in enumerate(self.window_sizes[i]):
                if not geometry.is_legal(w, i):  # (the message is built only for an illegal window)
                    geometry.check_window(w, i, f"Arch.window_sizes[{i}][{j}] (img_size={img_size}, patch_size={patch_size})")
        return geometry

    def __str__(self) -> str:
        def fmt(xs):
            xs = list(xs)
            return str(xs[0]) if len(set(xs)) == 1 else "/".join(map(str, xs))

        stages = [
            f"d{d} c{c} r{fmt(r)} h{fmt(h)} w{fmt(w)}"
            for d, c, r, h, w in zip(self.depths, self.embed_dims, self.mlp_ratios, self.num_heads, self.window_sizes)
        ]
        return "Arch(" + " | ".join(stages) + ")"


def _parse_choices(value, where: str, cast) -> tuple:
    """A choice list given either as a list or as {start, step, count}."""
    if isinstance(value, Mapping):
        missing = {"start", "step", "count"} - set(value)
        if missing:
            raise ValueError(f"{where}: {{start, step, count}} form is missing {sorted(missing)}: {dict(value)}")
        count = int(value["count"])
        if count < 1:
            raise ValueError(f"{where}: count={count}, must be >= 1")
        values = [value["start"] + i * value["step"] for i in range(count)]
    elif isinstance(value, (int, float)):
        values = [value]
    else:
        values = list(value)
    if not values:
        raise ValueError(f"{where}: empty choice list; give at least one value")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where}: {v!r} is not a finite number")
        c = cast(round(v, 6)) if cast is float else cast(v)
        if cast is int and c != v:
            raise ValueError(f"{where}: {v} is not an integer")
        out.append(c)
    if len(set(out)) != len(out):
        raise ValueError(f"{where}: duplicate choices in {out}")
    return tuple(sorted(out))


@dataclass(frozen=True)
class StageSpace:
    """The choices of one stage. Block dims are drawn independently for every block."""

    depth: tuple[int, ...]
    embed_dim: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    num_heads: tuple[int, ...]
    window_size: tuple[int, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "stage") -> StageSpace:
        missing = [k for k in DIMENSIONS if k not in d]
        unknown = sorted(set(d) - set(DIMENSIONS))
        if missing or unknown:
            raise ValueError(f"{where}: needs exactly the keys {list(DIMENSIONS)}; missing {missing}, unknown {unknown}")
        casts = {"mlp_ratio": float}
        return cls(**{k: _parse_choices(d[k], f"{where}.{k}", casts.get(k, int)) for k in DIMENSIONS})

    def to_dict(self) -> dict[str, list]:
        return {k: list(getattr(self, k)) for k in DIMENSIONS}

    def choices(self, dimension: str) -> tuple:
        return getattr(self, dimension)


@dataclass(frozen=True)
class SearchSpace:
    """Per-stage choice lists plus the input geometry they are meant for."""

    stages: tuple[StageSpace, ...]
    img_size: int = 224
    patch_size: int = 4
    geometry: Geometry = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("SearchSpace.stages is empty: give at least one stage")
        object.__setattr__(self, "geometry", Geometry(self.img_size, self.patch_size, len(self.stages)))
        for i, stage in enumerate(self.stages):
            for dim in ("depth", "embed_dim", "num_heads", "window_size"):
                bad = [v for v in stage.choices(dim) if v < 1]
                if bad:
                    raise ValueError(f"stages[{i}].{dim}: {bad} not allowed, values must be >= 1")
            if min(stage.mlp_ratio) <= 0:
                raise ValueError(f"stages[{i}].mlp_ratio: {stage.mlp_ratio} must all be > 0")
            for w in stage.window_size:
                self.geometry.check_window(w, i, f"stages[{i}].window_size (img_size={self.img_size}, "
                                                 f"patch_size={self.patch_size})")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSpace:
        """`{img_size, patch_size, stages: [{depth, embed_dim, mlp_ratio, num_heads, window_size}]}`;
        each dimension a list or `{start, step, count}`. Accepts a Hydra/OmegaConf node too."""
        from omegaconf import DictConfig, OmegaConf

        if isinstance(d, DictConfig):
            d = OmegaConf.to_container(d, resolve=True)
        if "stages" not in d:
            raise ValueError(f"search space needs a 'stages' list; got keys {sorted(d)}")
        unknown = sorted(set(d) - {"stages", "img_size", "patch_size", "name"})
        if unknown:
            raise ValueError(f"search space: unknown keys {unknown}; allowed: stages, img_size, patch_size, name")
        stages = tuple(StageSpace.from_dict(s, f"stages[{i}]") for i, s in enumerate(d["stages"]))
        return cls(stages, int(d.get("img_size", 224)), int(d.get("patch_size", 4)))

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        return _read_yaml(path, "search space", ["stages", "img_size", "patch_size"], cls.from_dict)

    @classmethod
    def single(cls, arch: Arch, img_size: int = 224, patch_size: int = 4) -> SearchSpace:
        """The one-point space {arch} (per-block values become the stage's choices)."""
        arch.check_geometry(img_size, patch_size)
        stages = tuple(
            StageSpace(
                (arch.depths[i],),
                (arch.embed_dims[i],),
                tuple(sorted(set(arch.mlp_ratios[i]))),
                tuple(sorted(set(arch.num_heads[i]))),
                tuple(sorted(set(arch.window_sizes[i]))),
            )
            for i in range(arch.num_stages)
        )
        return cls(stages, img_size, patch_size)

    def to_dict(self) -> dict[str, Any]:
        return {"img_size": self.img_size, "patch_size": self.patch_size, "stages": [s.to_dict() for s in self.stages]}

    def to_yaml(self, path: str | Path) -> Path:
        return write_yaml(path, self.to_dict())

    def replace(self, stage: int, dimension: str, choices: Sequence) -> SearchSpace:
        """A copy with one stage's choice list for `dimension` replaced (validated)."""
        stages = list(self.stages)
        d = stages[stage].to_dict()
        d[dimension] = list(choices)
        stages[stage] = StageSpace.from_dict(d, f"stages[{stage}]")
        return SearchSpace(tuple(stages), self.img_size, self.patch_size)

    # -- queries ----------------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def sample(self, generator: Generator, fixed: Mapping[tuple[int, str], Any] | None = None) -> Arch:
        """Uniform draw: each stage's depth and embed dim, then every block's dims, independently.
        `fixed` maps (stage, dimension) to one of its choices, which the stage (every block of it,
        for a block dimension) then takes; everything else is drawn as usual."""
        fixed = dict(fixed or {})
        for (i, dim), value in fixed.items():
            if not 0 <= i < self.num_stages or dim not in DIMENSIONS or value not in self.stages[i].choices(dim):
                raise ValueError(f"fixed[({i}, {dim!r})]={value}: not a choice of this space")

        def draw(i: int, dim: str):
            return fixed[(i, dim)] if (i, dim) in fixed else _choice(generator, self.stages[i].choices(dim))

        depths, dims, blocks = [], [], {dim: [] for dim in BLOCK_DIMENSIONS}
        for i in range(self.num_stages):
            d = draw(i, "depth")
            depths.append(d)
            dims.append(draw(i, "embed_dim"))
            for dim in BLOCK_DIMENSIONS:
                blocks[dim].append([draw(i, dim) for _ in range(d)])
        # the choices were checked when the space was read: `create`'s parsing is not needed, its casts are
        casts = {"mlp_ratio": float, "num_heads": int, "window_size": int}
        return Arch(tuple(map(int, depths)), tuple(map(int, dims)),
                    *(tuple(tuple(map(casts[dim], v)) for v in blocks[dim]) for dim in BLOCK_DIMENSIONS))

    def _extreme(self, pick) -> Arch:
        return Arch.create(
            [pick(s.depth) for s in self.stages],
            [pick(s.embed_dim) for s in self.stages],
            [pick(s.mlp_ratio) for s in self.stages],
            [pick(s.num_heads) for s in self.stages],
            [pick(s.window_size) for s in self.stages],
        )

    def largest(self) -> Arch:
        return self._extreme(max)

    def smallest(self) -> Arch:
        return self._extreme(min)

    def violations(self, arch: Arch) -> list[str]:
        """Every reason `arch` is not in this space (empty when it is)."""
        if arch.num_stages != self.num_stages:
            return [f"arch has {arch.num_stages} stages, the space has {self.num_stages}"]
        out = []
        for i, s in enumerate(self.stages):
            for dim in DIMENSIONS:
                bad = sorted({v for v in arch.values(i, dim) if v not in s.choices(dim)})
                if bad:
                    out.append(f"stage {i} {dim}={bad[0]} not in {list(s.choices(dim))}")
        return out

    def contains(self, arch: Arch) -> bool:
        return not self.violations(arch)

    def __contains__(self, arch: Arch) -> bool:
        return self.contains(arch)

    def check(self, arch: Arch) -> None:
        bad = self.violations(arch)
        if bad:
            raise ValueError(f"{arch} is outside the search space: " + "; ".join(bad))

    def size(self) -> int:
        """Number of distinct architectures."""
        total = 1
        for s in self.stages:
            per_block = len(s.mlp_ratio) * len(s.num_heads) * len(s.window_size)
            total *= len(s.embed_dim) * sum(per_block**d for d in s.depth)
        return total


def space_mismatch(requested: SearchSpace, trained: SearchSpace) -> list[str]:
    """Why `requested` is not a subspace of the space a supernet was trained on (empty when it is)."""
    out = []
    for name in ("img_size", "patch_size", "num_stages"):
        if getattr(requested, name) != getattr(trained, name):
            out.append(f"{name} {getattr(requested, name)} != {getattr(trained, name)}")
    if out:
        return out
    for i, (r, t) in enumerate(zip(requested.stages, trained.stages)):
        for dim in DIMENSIONS:
            extra = sorted(set(r.choices(dim)) - set(t.choices(dim)))
            if extra:
                out.append(f"stage {i} {dim} {extra} not in the supernet's {list(t.choices(dim))}")
    return out
