"""The ``NOT_GIVEN`` sentinel: "argument omitted", distinct from ``None`` ("send JSON null" / "no timeout")."""

from __future__ import annotations

from typing import Final, Literal, TypeAlias, TypeVar, final

_T = TypeVar("_T")


@final
class NotGiven:
    """Type of :data:`NOT_GIVEN`. Falsy, a singleton, and never serialised.

    >>> client.samples.create("digits-dcgan", seed=NOT_GIVEN)   # no "seed" key: the server picks one
    >>> client.samples.create("digits-dcgan", seed=None)        # "seed": null is sent
    """

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()

NotGivenOr: TypeAlias = _T | NotGiven
"""``NotGivenOr[int]``: an int, or :data:`NOT_GIVEN`."""


def is_given(value: object) -> bool:
    """True unless ``value`` is :data:`NOT_GIVEN`."""
    return not isinstance(value, NotGiven)
