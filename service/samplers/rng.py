"""Counter-based, per-chain random streams.

Every random number a sampler uses is a pure function of

    (request seed, chain index, step t, draw id, element index)

computed with an integer hash in vectorised torch ops. A chain's noise therefore does not depend on the batch it
runs in, on its neighbours, on other requests merged into the same batch, or on the device: a request is
reproducible from its seed alone (docs/algorithms.md §4 pitfall 4, §5 test 7). ``torch.Generator`` cannot do this: it is
one sequential stream per call.

The hash is Chris Wellons' ``lowbias32`` finaliser on 32-bit lanes. On an accelerator the lanes are int64 tensors
and a product is reduced mod 2**32 with a mask (signed overflow is not relied upon anywhere). On a CPU the same
integer arithmetic runs in numpy on uint32 arrays, where products wrap by definition: the bits are identical, and it
is 2-4x faster than int64 torch ops there (``benchmarks/speed_findings.md``, random numbers), because a hash is a
dozen elementwise passes over small arrays, where torch's per-op cost dominates. The floating-point part (Box-Muller's
log, sqrt, cos and sin) runs in torch on every device. Keys are 64 bits (two lanes) so that distinct
(seed, chain, t, draw) tuples practically never share noise.

Draw ids: a sampler uses a distinct small integer for each kind of draw within a step (proposal noise, the
uniform of the accept test, ...). ``DRAW_INIT`` is reserved for the initial state.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

_M32 = 0xFFFFFFFF
_KEY_START = (0x243F6A88, 0x85A308D3)
"""The two key lanes before any word is absorbed (every path starts from these)."""
_M16 = 0xFFFF

DRAW_INIT = 0
"""Draw id reserved for initial states (``t`` is 0 for them)."""


class Streams(NamedTuple):
    """One random stream per row.

    seed:   (B,) int64, the request's seed (0 <= seed < 2**63).
    chain:  (B,) int64, the chain's index within its request.
    prefix: (B, 2) int64 or None: the two key lanes after absorbing (seed, chain). They are constant for a chain,
            so :meth:`for_request` computes them once and every draw absorbs only (t, draw); ``None`` computes
            them per draw. Either way the numbers are identical.
    """

    seed: Tensor
    chain: Tensor
    prefix: Tensor | None = None

    @staticmethod
    def for_request(seed: int, n: int, device: torch.device | str = "cpu", first_chain: int = 0) -> Streams:
        """Streams for chains ``first_chain .. first_chain + n - 1`` of a request with ``seed``."""
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {seed}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        dev = torch.device(device)
        seeds = torch.full((n,), seed, dtype=torch.int64, device=dev)
        if dev.type == "cpu":
            chains_np = np.arange(first_chain, first_chain + n, dtype=np.int64)
            prefix = _request_prefix_np(seed, chains_np).T.astype(np.int64, order="C")  # (B, 2)
            return Streams(seeds, torch.from_numpy(chains_np), torch.from_numpy(prefix))
        chains = torch.arange(first_chain, first_chain + n, dtype=torch.int64, device=dev)
        return Streams(seeds, chains, _chain_prefix(seeds, chains).T.contiguous())

    def to(self, device: torch.device | str) -> Streams:
        return Streams(self.seed.to(device), self.chain.to(device), None if self.prefix is None else self.prefix.to(device))

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.seed.shape[0])


def _mul32(a: Tensor, c: int) -> Tensor:
    """(a * c) mod 2**32 for a in [0, 2**32) without int64 overflow.

    With c' = c − 2**32 when c >= 2**31 (so |c'| <= 2**31), |a · c'| < 2**63 and a · c' ≡ a · c (mod 2**32): one
    multiply and one mask (two's-complement ``&`` takes the residue of a negative product correctly).
    """
    return (a * (c - 2**32 if c >= 2**31 else c)) & _M32


def _mix(h: Tensor) -> Tensor:
    """lowbias32: a bijective 32-bit finaliser with low avalanche bias."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x7FEB352D)
    h = h ^ (h >> 15)
    h = _mul32(h, 0x846CA68B)
    return h ^ (h >> 16)


def _as_rows(t: Tensor | int, like: Tensor) -> Tensor:
    if isinstance(t, int):
        return torch.full_like(like, t)
    return t.to(device=like.device, dtype=torch.int64).expand_as(like)


def _absorb(ab: Tensor, parts: tuple[Tensor, ...]) -> Tensor:
    """Absorb 32-bit words into the two key lanes, held as the rows of one (2, B) tensor (half the launches)."""
    for p in parts:
        ab = _mix(torch.stack((ab[0] ^ p, (ab[1] + _GOLDEN + p) & _M32)))
    return ab


def _chain_prefix(seed: Tensor, chain: Tensor) -> Tensor:
    """(2, B) key lanes after (seed, chain)."""
    if seed.device.type == "cpu":
        return torch.from_numpy(_chain_prefix_np(seed.numpy(), chain.numpy()).astype(np.int64))
    return _chain_prefix_tensor(seed, chain)


def _chain_prefix_tensor(seed: Tensor, chain: Tensor) -> Tensor:
    """:func:`_chain_prefix` in int64 torch ops (accelerators)."""
    ab = torch.stack((torch.full_like(seed, _KEY_START[0]), torch.full_like(seed, _KEY_START[1])))
    return _absorb(ab, (seed & _M32, (seed >> 32) & _M32, chain & _M32, (chain >> 32) & _M32))


_GOLDEN = 0x9E3779B9
_U16, _U15 = np.uint32(16), np.uint32(15)
_C1, _C2 = np.uint32(0x7FEB352D), np.uint32(0x846CA68B)


def _mix_np(h: np.ndarray) -> np.ndarray:
    """:func:`_mix` on uint32 (products wrap mod 2**32); ``h`` is consumed (updated in place)."""
    h ^= h >> _U16
    h *= _C1
    h ^= h >> _U15
    h *= _C2
    h ^= h >> _U16
    return h


def _on_host(streams: Streams) -> bool:
    return streams.seed.device.type == "cpu"


def _absorb_np(ab: np.ndarray, words: tuple[np.ndarray | int, ...]) -> np.ndarray:
    """:func:`_absorb` on the host: ``ab`` (2, B) uint32 lanes, updated in place; words are int64 arrays or ints,
    each < 2**32. Both lanes are mixed in one pass (numpy's per-call cost dominates at a few hundred rows)."""
    with np.errstate(over="ignore"):
        for w in words:
            p = np.asarray(w).astype(np.uint32)
            ab[0] ^= p
            ab[1] += np.uint32(_GOLDEN) + p
            _mix_np(ab)
    return ab


def _chain_prefix_np(seed: np.ndarray, chain: np.ndarray) -> np.ndarray:
    """:func:`_chain_prefix` on the host: (2, B) uint32."""
    ab = np.empty((2, *seed.shape), dtype=np.uint32)
    ab[0], ab[1] = _KEY_START
    return _absorb_np(ab, (seed & _M32, (seed >> 32) & _M32, chain & _M32, (chain >> 32) & _M32))


def _mix_int(h: int) -> int:
    """:func:`_mix` of one 32-bit word, in Python integers."""
    h ^= h >> 16
    h = (h * 0x7FEB352D) & _M32
    h ^= h >> 15
    h = (h * 0x846CA68B) & _M32
    return h ^ (h >> 16)


def _request_prefix_np(seed: int, chain: np.ndarray) -> np.ndarray:
    """:func:`_chain_prefix_np` for the chains of one request: (2, B) uint32, the same numbers.

    Every row shares the seed, so its two words are absorbed once, in Python integers, and only the chain's words
    per row (half the numpy calls of a request's streams)."""
    a, b = _KEY_START
    for w in (seed & _M32, (seed >> 32) & _M32):
        a, b = _mix_int(a ^ w), _mix_int((b + _GOLDEN + w) & _M32)
    ab = np.empty((2, *chain.shape), dtype=np.uint32)
    ab[0], ab[1] = a, b
    high: np.ndarray | int = (chain >> 32) & _M32 if chain.size and int(chain[-1]) > _M32 else 0
    return _absorb_np(ab, (chain & _M32, high))


def _bits_np(streams: Streams, t: Tensor | int, draw: int, n: int) -> np.ndarray:
    """:func:`_bits` on the host: (B, n) uint32, the same numbers."""
    if streams.prefix is None:
        ab = _chain_prefix_np(streams.seed.numpy(), streams.chain.numpy())
    else:
        ab = streams.prefix.numpy().T.astype(np.uint32, order="C")  # (2, B), values < 2**32
    tt = np.asarray(t.detach().numpy() if isinstance(t, Tensor) else t, dtype=np.int64)
    a, b = _absorb_np(ab, (tt & _M32, (tt >> 32) & _M32, draw & _M32))
    with np.errstate(over="ignore"):
        h = _mix_np(a[:, None] ^ np.arange(n, dtype=np.uint32)[None, :])
        h ^= b[:, None]
        return _mix_np(h)


def _keys(streams: Streams, t: Tensor | int, draw: int) -> tuple[Tensor, Tensor]:
    """Two 32-bit key lanes per row, (B,) each: (seed, chain) then (t, draw) absorbed in that order."""
    seed = streams.seed
    t_rows = _as_rows(t, seed)
    ab = _chain_prefix(seed, streams.chain) if streams.prefix is None else streams.prefix.T
    ab = _absorb(ab, (t_rows & _M32, (t_rows >> 32) & _M32, torch.full_like(seed, draw & _M32)))
    return ab[0], ab[1]


def _bits(streams: Streams, t: Tensor | int, draw: int, n: int) -> Tensor:
    """(B, n) uniformly distributed 32-bit integers (in int64)."""
    a, b = _keys(streams, t, draw)
    e = torch.arange(n, dtype=torch.int64, device=a.device)
    h = _mix(a[:, None] ^ e[None, :])
    return _mix(h ^ b[:, None])


def uniform(
    streams: Streams, t: Tensor | int, draw: int, shape: tuple[int, ...] = (), dtype: torch.dtype = torch.float32
) -> Tensor:
    """U(0, 1) of shape (B, *shape), strictly inside (0, 1), exactly representable in float32.

    24 bits per number: ((h >> 8) + 0.5) / 2**24, so ``log(u) < 0`` always and an MH test with
    ``log alpha >= 0`` always accepts.
    """
    n = math.prod(shape)
    if _on_host(streams):  # every step is exact in float64, so numpy gives the very same values
        hn = (_bits_np(streams, t, draw, n) >> np.uint32(8)).astype(np.float64)
        return torch.from_numpy((hn + 0.5) * (2.0**-24)).reshape(len(streams), *shape).to(dtype)
    h = _bits(streams, t, draw, n) >> 8
    u = (h.to(torch.float64) + 0.5) * (2.0**-24)
    return u.reshape(len(streams), *shape).to(dtype)


def normal(
    streams: Streams, t: Tensor | int, draw: int, shape: tuple[int, ...], dtype: torch.dtype = torch.float32
) -> Tensor:
    """N(0, 1) of shape (B, *shape) by Box-Muller (float64 internally).

    Elements 2k and 2k+1 are the cosine and sine halves of one Box-Muller pair built from the 32-bit draws 2k and
    2k+1, so n normals cost n hashes and element i depends only on (key, i), never on the shape's size.
    """
    n = math.prod(shape)
    pairs = (n + 1) // 2
    if _on_host(streams):  # the integer-to-float steps are exact: numpy gives the same u1 and u2
        hn = _bits_np(streams, t, draw, 2 * pairs).astype(np.float64)
        u1 = torch.from_numpy((hn[:, 0::2] + 0.5) * (2.0**-32))
        u2 = torch.from_numpy(hn[:, 1::2] * (2.0**-32))
    else:
        h = _bits(streams, t, draw, 2 * pairs)
        u1 = (h[:, 0::2].to(torch.float64) + 0.5) * (2.0**-32)
        u2 = h[:, 1::2].to(torch.float64) * (2.0**-32)
    r = torch.sqrt(-2.0 * torch.log(u1))
    theta = (2.0 * math.pi) * u2
    z = torch.stack((r * torch.cos(theta), r * torch.sin(theta)), dim=2).reshape(len(streams), 2 * pairs)
    return z[:, :n].reshape(len(streams), *shape).to(dtype)


def integers(streams: Streams, t: Tensor | int, draw: int, high: int) -> Tensor:
    """(B,) int64 uniform on [0, high) by multiply-shift of a 32-bit draw (bias below high / 2**32)."""
    if not 0 < high < 2**31:
        raise ValueError(f"high must be in (0, 2**31), got {high}")
    if _on_host(streams):
        hn = _bits_np(streams, t, draw, 1)[:, 0].astype(np.uint64)
        return torch.from_numpy(((hn * np.uint64(high)) >> np.uint64(32)).astype(np.int64))
    h = _bits(streams, t, draw, 1)[:, 0]
    return (h * high) >> 32
