"""Contracts shared by every sampler (BlackJAX's shape, in PyTorch).

A sampler is an object built from a :class:`GanPair` and its categorical options, with two pure functions over
batched per-row state, one chain per row::

    algo = SAMPLERS["rep"](pair, RepOptions())
    params = algo.make_params({"step_size": torch.full((B,), 0.01)})   # per-row numbers, defaults filled in
    state = algo.init(streams, params)                                # RepState, every field (B, ...)
    state, info = algo.step(state, streams, params, t)                # RepInfo, every field (B,) or (B, ...)
    out = algo.output(state)                                          # ChainOutput(z, x, logit)

Rules every sampler keeps:

- All per-row data (State, Params, Info) are NamedTuples whose fields are tensors with a leading batch dimension,
  so the engine can concatenate and select rows generically (:func:`tree_cat`, :func:`tree_select`).
- ``t`` is a (B,) int64 tensor: the number of steps each row has completed before this step (rows joined a running
  batch at different times). Random numbers come only from :mod:`service.samplers.rng` keyed by (streams, t, draw),
  so a chain depends only on its (seed, chain index).
- A row's length ``n_steps`` (B,) is given to :meth:`SamplingAlgorithm.done`; the default rule is ``t >= n_steps``.
  One-shot kernels (raw) have length 0; DRS rows finish when accepted.
- Info always carries ``acceptance_rate`` (mean of min(1, alpha) for this step; 1.0 for one-shot kernels),
  ``is_accepted`` (bool) and ``is_nonfinite`` (bool: the proposal had a non-finite logit or gradient and was
  rejected). Numerical trouble is data, never an exception.
- G and D are frozen and in eval mode (the registry guarantees it); gradients are taken with
  ``torch.autograd.grad`` with respect to z only (:mod:`service.samplers.energy`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar, cast

import torch
from torch import Tensor

from service.samplers.rng import Streams

Module = Callable[[Tensor], Tensor]


class GanPair(NamedTuple):
    """The networks a sampler works on.

    generator: z (B, *latent_shape) -> x (B, *output_shape).
    logit:     x (B, *output_shape) -> calibrated logit d~(x), (B,). For a critic this is the calibrated critic.
    latent_shape: shape of one latent, e.g. (2,) or (64, 1, 1). The prior is N(0, I) on it.
    differentiable: False for forward-only backends (ONNX); samplers with ``needs_grad`` refuse such a pair.
    real: optional held-out real samples (N, *output_shape) with their calibrated logits (N,), used by MH-GAN's
          ``real`` initialisation. Never the data the GAN trained on.
    """

    generator: Module
    logit: Module
    latent_shape: tuple[int, ...]
    differentiable: bool = True
    real: Tensor | None = None
    real_logit: Tensor | None = None


class ParamSpec(NamedTuple):
    """A per-row numeric parameter: its name, default and inclusive bounds, as quoted in docs and errors."""

    name: str
    default: float
    low: float
    high: float
    doc: str
    integer: bool = False

    def check(self, value: float) -> None:
        """Raise :class:`SamplerParamError` naming the parameter, the value and the constraint."""
        import math

        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise SamplerParamError(self.name, value, f"a finite number in [{self.low}, {self.high}]")
        if self.integer and float(value) != int(value):
            raise SamplerParamError(self.name, value, f"an integer in [{int(self.low)}, {int(self.high)}]")
        if not self.low <= value <= self.high:
            raise SamplerParamError(self.name, value, f"in [{self.low}, {self.high}]")


class SamplerError(Exception):
    """Base of the sampler errors.

    SamplerError
    ├── SamplerParamError      a per-row parameter or option outside its constraint
    └── UnsupportedPairError   the pair cannot run this sampler (e.g. no gradients through an ONNX model)
    """


class SamplerParamError(SamplerError, ValueError):
    def __init__(self, param: str, value: object, constraint: str) -> None:
        super().__init__(f"{param} must be {constraint}, got {value!r}")
        self.param = param
        self.value = value
        self.constraint = constraint


class UnsupportedPairError(SamplerError):
    def __init__(self, sampler: str, reason: str) -> None:
        super().__init__(f"sampler {sampler!r} cannot run on this model: {reason}")
        self.sampler = sampler
        self.reason = reason


class ChainOutput(NamedTuple):
    """What a finished chain returns. z (B, *latent_shape), x (B, *output_shape), logit (B,)."""

    z: Tensor
    x: Tensor
    logit: Tensor


S = TypeVar("S", bound=tuple[Any, ...])
I_co = TypeVar("I_co", bound=tuple[Any, ...], covariant=True)
P = TypeVar("P", bound=tuple[Any, ...])


class SamplingAlgorithm(Protocol):
    """What every sampler class provides. See the module docstring for the rules."""

    name: ClassVar[str]
    needs_grad: ClassVar[bool]
    param_specs: ClassVar[tuple[ParamSpec, ...]]
    default_steps: ClassVar[int]
    stops_early: ClassVar[bool]  # rows finish at their first acceptance (DRS)

    def make_params(self, values: Mapping[str, Tensor], batch: int, device: torch.device) -> Any:
        """Per-row Params NamedTuple; missing names take their spec default."""
        ...

    def init(self, streams: Streams, params: Any) -> Any: ...

    def step(self, state: Any, streams: Streams, params: Any, t: Tensor) -> tuple[Any, Any]: ...

    def done(self, state: Any, params: Any, t: Tensor, n_steps: Tensor) -> Tensor: ...

    def output(self, state: Any) -> ChainOutput: ...

    def exact(self) -> bool:
        """True when the target is exact for an optimal calibrated D (no O(eps) bias, no gamma shift)."""
        ...

    def supports_blocks(self) -> bool:
        """True when ``step_block(state, streams, params, t, steps, width) -> (state, BlockInfo)`` runs up to
        ``width`` steps per row in one network call (:mod:`service.samplers.block`)."""
        ...

    def steps_left(self, state: Any, params: Any, t: Tensor, n_steps: Tensor) -> Tensor:
        """(B,) int64 steps each row still runs before ``done``."""
        ...

    def block_limit(self) -> int | None:
        """Most steps per block, or None."""
        ...

    def step_block(self, state: Any, streams: Streams, params: Any, t: Tensor, steps: Tensor, width: int) -> Any:
        """``(state, BlockInfo)`` after up to ``width`` steps per row (``steps`` (B,))."""
        ...


def fill_params(
    cls: type[P],
    specs: Sequence[ParamSpec],
    values: Mapping[str, Tensor],
    batch: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> P:
    """Build a Params NamedTuple of (B,) tensors from ``values``, filling defaults. Unknown names are an error."""
    known = {s.name for s in specs}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SamplerParamError(unknown[0], values[unknown[0]], f"one of {sorted(known)}")
    fields = {}
    for s in specs:
        v = values.get(s.name)
        fields[s.name] = (
            torch.full((batch,), s.default, dtype=dtype, device=device)
            if v is None
            else v.to(device=device, dtype=dtype).expand(batch).clone()
        )
    return cls(**fields)


# ----------------------------------------------------------------------------------------------------------------
# Row-wise operations on NamedTuples of batched tensors (State, Params, Info).

T = TypeVar("T", bound=tuple[Any, ...])


def _rebuild(like: T, fields: Sequence[Tensor | None]) -> T:
    """A NamedTuple of ``like``'s type holding ``fields``."""
    return cast(T, cast(Any, type(like))(*fields))


def tree_cat(trees: Sequence[T]) -> T:
    """Concatenate NamedTuples of (B_i, ...) tensors along rows. ``None`` fields stay ``None``."""
    first = trees[0]
    out: list[Tensor | None] = []
    for i, f in enumerate(first):
        out.append(None if f is None else torch.cat([t[i] for t in trees], dim=0))
    return _rebuild(first, out)


def tree_select(tree: T, rows: Tensor) -> T:
    """Rows of every field: ``rows`` is a (B,) bool mask or an int64 index tensor."""
    return _rebuild(tree, [None if f is None else f[rows] for f in tree])


def tree_scatter(tree: T, rows: Tensor, sub: T) -> T:
    """``tree`` with the rows at int64 indices ``rows`` replaced by the rows of ``sub`` (same field layout)."""
    return _rebuild(
        tree, [None if f is None else f.index_copy(0, rows, g) for f, g in zip(tree, sub, strict=True)]
    )


def tree_where(mask: Tensor, new: T, old: T) -> T:
    """Per-row choice: ``new`` where ``mask`` (B,) is True, else ``old``."""
    out: list[Tensor | None] = []
    for a, b in zip(new, old, strict=True):
        if a is None:
            out.append(None)
            continue
        m = mask.reshape(mask.shape + (1,) * (a.dim() - 1))
        out.append(torch.where(m, a, b))
    return _rebuild(new, out)


def tree_to(tree: T, device: torch.device | str) -> T:
    return _rebuild(tree, [None if f is None else f.to(device) for f in tree])


def rows_where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``torch.where`` with a (B,) mask broadcast over the trailing dims of a and b."""
    return torch.where(mask.reshape(mask.shape + (1,) * (a.dim() - 1)), a, b)


def logaddexp(a: Tensor, b: Tensor) -> Tensor:
    """log(exp(a) + exp(b)) from elementwise kernels that give each element the same bits whatever its position in
    the tensor. (``torch.logaddexp`` on CPU takes a vectorised path for most elements and a scalar one for the
    tail, which round differently: a chain's sums would then depend on the batch it shares.)"""
    m = torch.maximum(a, b)
    out = m + torch.log1p(torch.exp(-(a - b).abs()))
    return torch.where(torch.isinf(m) & (a == b), m, out)  # both -inf (or both +inf): inf - inf is NaN above
