"""The sampler core: pure torch + stdlib (never fastapi, prometheus_client, httpx or onnxruntime).

``SAMPLERS[name]`` is a :class:`SamplerEntry`: ``algo = entry.cls(pair, entry.options_cls.from_dict(d))``.
See :mod:`service.samplers.base` for the contract and :mod:`service.samplers.driver` for the in-process driver.
"""

from __future__ import annotations

from typing import NamedTuple

from service.samplers.base import (
    ChainOutput,
    GanPair,
    ParamSpec,
    SamplerError,
    SamplerParamError,
    UnsupportedPairError,
)
from service.samplers.ddls import DdlsOptions, DdlsSampler
from service.samplers.drs import DrsOptions, DrsSampler
from service.samplers.kernel import STEPS_KEY, SamplerBase
from service.samplers.mh import MhOptions, MhSampler
from service.samplers.options import Options
from service.samplers.raw import RawOptions, RawSampler
from service.samplers.rep import RepOptions, RepSampler
from service.samplers.rng import Streams
from service.samplers.sir import SirOptions, SirSampler


class SamplerEntry(NamedTuple):
    """A sampler class and its options dataclass."""

    cls: type[SamplerBase]
    options_cls: type[Options]


SAMPLERS: dict[str, SamplerEntry] = {
    "raw": SamplerEntry(RawSampler, RawOptions),
    "mh": SamplerEntry(MhSampler, MhOptions),
    "rep": SamplerEntry(RepSampler, RepOptions),
    "ddls": SamplerEntry(DdlsSampler, DdlsOptions),
    "drs": SamplerEntry(DrsSampler, DrsOptions),
    "sir": SamplerEntry(SirSampler, SirOptions),
}

__all__ = [
    "SAMPLERS",
    "STEPS_KEY",
    "ChainOutput",
    "DdlsOptions",
    "DdlsSampler",
    "DrsOptions",
    "DrsSampler",
    "GanPair",
    "MhOptions",
    "MhSampler",
    "Options",
    "ParamSpec",
    "RawOptions",
    "RawSampler",
    "RepOptions",
    "RepSampler",
    "SamplerEntry",
    "SamplerError",
    "SamplerParamError",
    "SirOptions",
    "SirSampler",
    "Streams",
    "UnsupportedPairError",
]
