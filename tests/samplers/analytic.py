"""Analytic G/D pairs with known targets (docs/algorithms.md §5).

G is elementwise affine, G(z) = a·z + b, so p_g = N(b, a²) per coordinate, and the logit is the optimal
discriminator d*(x) = log p_d(x) − log p_g(x) (optionally times a temperature), summed over coordinates. Both act
row by row with elementwise ops only, so a row's result is bit-identical whatever batch it runs in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from service.samplers import GanPair

LOG_2PI = math.log(2.0 * math.pi)


def normal_logpdf(x: Tensor, mean: float, std: float) -> Tensor:
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * LOG_2PI


def mixture_logpdf(x: Tensor, comps: list[tuple[float, float, float]]) -> Tensor:
    """log Σ_k w_k N(x; m_k, s_k²) for comps = [(w, m, s), ...]."""
    parts = torch.stack([math.log(w) + normal_logpdf(x, m, s) for w, m, s in comps])
    return torch.logsumexp(parts, dim=0)


def affine_pair(
    log_pd: Callable[[Tensor], Tensor],
    a: float = 1.0,
    b: float = 0.0,
    dim: int = 1,
    temperature: float = 1.0,
    real: Tensor | None = None,
) -> GanPair:
    """G(z) = a z + b on R^dim; logit(x) = temperature · Σ_i [log p_d(x_i) − log N(x_i; b, a²)]."""

    def generator(z: Tensor) -> Tensor:
        return z * a + b

    def logit(x: Tensor) -> Tensor:
        d = log_pd(x) - normal_logpdf(x, b, abs(a))
        return temperature * d.sum(dim=1)

    real_logit = None if real is None else logit(real)
    return GanPair(generator, logit, (dim,), real=real, real_logit=real_logit)


# The simplest case of §5 test 1: G(z) = z, p_d = N(1, 0.5²). Then pi(z) = N(1, 0.5²) exactly.
TARGET_MEAN = 1.0
TARGET_STD = 0.5


def gaussian_target_pair(temperature: float = 1.0, dim: int = 1, real: Tensor | None = None) -> GanPair:
    return affine_pair(lambda x: normal_logpdf(x, TARGET_MEAN, TARGET_STD), dim=dim, temperature=temperature, real=real)


def gaussian_target_logit_max() -> float:
    """max_x d*(x) for p_g = N(0, 1), p_d = N(1, 0.5²): at x = 4/3 (d/dx: −4(x−1) + x = 0)."""
    x = torch.tensor([[4.0 / 3.0]], dtype=torch.float64)
    return float(gaussian_target_pair().logit(x))


def null_pair(dim: int) -> GanPair:
    """A constant discriminator: every exact sampler reduces to raw, latent samplers to the prior."""

    def generator(z: Tensor) -> Tensor:
        return torch.tanh(z) * 2.0 + 0.5

    def logit(x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)

    return GanPair(generator, logit, (dim,))


def nonlinear_pair(dim: int = 3) -> GanPair:
    """A smooth nonlinear G and D (row-wise, elementwise ops) for kernel-level identities."""

    def generator(z: Tensor) -> Tensor:
        return torch.tanh(z * 0.8) * 1.5 + 0.3 * z

    def logit(x: Tensor) -> Tensor:
        return (torch.sin(2.0 * x) * 1.2 - 0.3 * (x - 0.5) ** 2).sum(dim=1)

    return GanPair(generator, logit, (dim,))
