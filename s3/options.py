"""Typed option groups: a dataclass whose defaults define each option's kind, built from a
config node with one clear error for an unknown key or a wrong value (what the entry points print
as one line, exit 2) instead of a Hydra composition traceback."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

from omegaconf import OmegaConf


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Options:
    """A dataclass of options whose defaults define each option's kind (a flag, an integer, a
    number, a tuple of numbers in [0, 1)); `POSITIVE` ones must be > 0, every other number >= 0."""

    GROUP: ClassVar[str] = ""
    POSITIVE: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            self._check(f.name, getattr(self, f.name), default)

    def _check(self, name: str, value, default) -> None:
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, tuple):
            ok = isinstance(value, (tuple, list)) and len(value) == len(default) and all(
                is_number(v) and 0 <= v < 1 for v in value)
            kind = f"{len(default)} numbers in [0, 1)"
        elif default is None:  # an optional positive integer (None: decided elsewhere)
            ok, kind = value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0), \
                "an integer >= 1, or null"
        else:
            positive, integer = name in self.POSITIVE, isinstance(default, int)
            ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else is_number(value)
            ok = ok and (value > 0 if positive else value >= 0)
            kind = f"{'an integer' if integer else 'a number'} {('>= 1' if integer else '> 0') if positive else '>= 0'}"
        if not ok:
            raise ValueError(f"model.{self.GROUP}.{name}={value!r}: must be {kind}")

    @classmethod
    def of(cls, given: Mapping | Options | None):
        """The options from `model.<GROUP>` (a mapping, possibly partial) or as they are."""
        if isinstance(given, cls):
            return given
        given = dict(OmegaConf.to_container(given, resolve=True) if OmegaConf.is_config(given) else given or {})
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = set(given) - set(allowed)
        if unknown:
            raise ValueError(f"model.{cls.GROUP}: unknown keys {sorted(unknown)}; allowed {sorted(allowed)}")
        return cls(**given)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


