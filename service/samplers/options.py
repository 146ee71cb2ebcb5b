"""Categorical per-request options of the samplers (frozen dataclasses built from JSON dicts).

Numeric, per-row knobs (step sizes) are :class:`~service.samplers.base.ParamSpec` params; options are the choices
that change the kernel itself (``init``, ``proposal``, ``decay``...), so chains with different options run in
different pools. Each option field declares its constraint in ``metadata["option"]``:

- ``Choice(("a", "b"))``: one of the listed strings;
- ``Flag()``: a JSON boolean;
- ``Number(low, high, optional)``: a finite number in [low, high], or ``None`` when ``optional``.

``Options.from_dict(d)`` and direct construction validate alike and raise
:class:`~service.samplers.base.SamplerParamError` naming the option, the value and the constraint.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple, Self

from service.samplers.base import SamplerParamError


class UnknownOptionError(SamplerParamError):
    """A key in ``options`` that the sampler does not have (the key is what is wrong, not its value)."""

    def __init__(self, key: str, value: object, known: list[str]) -> None:
        super().__init__(key, value, f"an option of this sampler: one of {known}")
        self.known = known

    def __str__(self) -> str:
        return f"unknown option {self.param!r}; known: {self.known}"


class Choice(NamedTuple):
    values: tuple[str, ...]

    def check(self, name: str, value: object) -> None:
        if not isinstance(value, str) or value not in self.values:
            raise SamplerParamError(name, value, f"one of {list(self.values)}")

    def describe(self) -> list[Any]:
        return list(self.values)


class Flag(NamedTuple):
    def check(self, name: str, value: object) -> None:
        if not isinstance(value, bool):
            raise SamplerParamError(name, value, "a boolean (true or false)")

    def describe(self) -> list[Any]:
        return [False, True]


class Number(NamedTuple):
    low: float
    high: float
    optional: bool = False

    def check(self, name: str, value: object) -> None:
        if value is None and self.optional:
            return
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not self.low <= value <= self.high
        ):
            extra = " or null" if self.optional else ""
            raise SamplerParamError(name, value, f"a finite number in [{self.low}, {self.high}]{extra}")

    def describe(self) -> list[Any]:
        return [{"type": "number", "low": self.low, "high": self.high, "nullable": self.optional}]


Constraint = Choice | Flag | Number


def option(default: Any, constraint: Constraint, doc: str) -> Any:
    """A dataclass field carrying its constraint and documentation."""
    return dataclasses.field(default=default, metadata={"option": constraint, "doc": doc})


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of every sampler's options dataclass."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            f.metadata["option"].check(f.name, getattr(self, f.name))

    @classmethod
    def from_dict(cls, d: Mapping[str, object] | None = None) -> Self:
        """Build from a JSON object; unknown keys and bad values raise :class:`SamplerParamError`."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        for key in sorted(d):
            if key not in known:
                raise UnknownOptionError(key, d[key], sorted(known))
        return cls(**d)

    @classmethod
    def from_defaults(cls, defaults: Mapping[str, object], overrides: Mapping[str, object] | None = None) -> Self:
        """Options from a model's ``[samplers.<name>]`` table, overridden by a request's ``options``.

        Only the table's keys that are options of this sampler are taken (``steps`` and numeric params are not
        options); e.g. ``[samplers.drs] logit_max = 2.3`` becomes ``DrsOptions(logit_max=2.3)``. ``overrides`` is
        validated like :meth:`from_dict` (unknown keys raise).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        merged = {k: v for k, v in defaults.items() if k in known}
        over = cls.from_dict(overrides)  # validates the request's keys and values
        merged.update({k: getattr(over, k) for k in (overrides or {})})
        return cls(**merged)

    @classmethod
    def describe(cls) -> dict[str, list[Any]]:
        """``{option: allowed values}`` for ``GET /v1/models`` (a number option lists its range instead)."""
        return {f.name: f.metadata["option"].describe() for f in dataclasses.fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
