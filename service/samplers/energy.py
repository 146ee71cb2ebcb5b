"""The latent target shared by every latent-space sampler (ALGORITHMS.md §0).

    pi(z) ∝ p0(z) · exp(d~(G(z))),      U(z) = ½‖z‖² − d~(G(z)),      p0 = N(0, I).

Shapes: z (B, *latent_shape); every per-row scalar is (B,).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from service.samplers.base import GanPair


class Evaluation(NamedTuple):
    """G and D at a batch of latents.

    x:        (B, *output_shape) G(z), detached.
    logit:    (B,) calibrated logit d~(G(z)), detached; non-finite values are kept (callers test ``finite``).
    grad:     (B, *latent_shape) ∇_z d~(G(z)), or None when not requested. Non-finite entries are zeroed
              and flagged in ``finite``.
    finite:   (B,) bool, logit, x (and gradient when requested) all finite.
    """

    x: Tensor
    logit: Tensor
    grad: Tensor | None
    finite: Tensor


ELEMENTWISE_ROW_MAX = 16
"""Rows of at most this many values are checked elementwise; longer ones by their max and min (below)."""


def rows_finite(x: Tensor) -> Tensor:
    """(B,) bool: every element of row ``x[i]`` is finite (a NaN image with a finite logit is still trouble).

    A row is finite exactly when its max and min are: both reductions propagate NaN, and an infinity is the max or
    the min. On a CPU ``isfinite(x).all(1)`` runs a bool pass over every element (and ``flatten`` copies a
    channels_last image first): 276 vs 113 µs for 256 16x16 images, 4.8 vs 0.28 ms for 256 3x64x64 ones. Short rows
    (a 2-D sample) keep the elementwise test, which is faster there.
    """
    x = x.detach()
    if x.dim() == 1:
        return torch.isfinite(x)
    row = math.prod(x.shape[1:])
    if row <= ELEMENTWISE_ROW_MAX:
        return torch.isfinite(x.reshape(x.shape[0], row)).all(1)
    dims = tuple(range(1, x.dim()))
    return torch.isfinite(x.amax(dims)) & torch.isfinite(x.amin(dims))


def log_prior(z: Tensor) -> Tensor:
    """log N(z; 0, I) up to its constant, (B,)."""
    return -0.5 * z.flatten(1).pow(2).sum(1)


def evaluate(pair: GanPair, z: Tensor, with_grad: bool) -> Evaluation:
    """One forward of D∘G, plus one backward w.r.t. z only when ``with_grad`` (never ``.backward()``)."""
    if not with_grad:
        with torch.no_grad():
            x = pair.generator(z)
            logit = pair.logit(x).reshape(-1)
        return Evaluation(x, logit, None, torch.isfinite(logit) & rows_finite(x))
    with torch.enable_grad():
        zg = z.detach().requires_grad_(True)
        x = pair.generator(zg)
        logit = pair.logit(x).reshape(-1)
        if logit.requires_grad:
            (g,) = torch.autograd.grad(logit.sum(), zg, allow_unused=True)
        else:
            g = None
        grad = torch.zeros_like(zg) if g is None else g  # a logit that ignores z has zero gradient
    grad_ok = torch.isfinite(grad)
    finite = torch.isfinite(logit) & grad_ok.flatten(1).all(1) & rows_finite(x)
    grad = torch.where(grad_ok, grad, 0.0)
    return Evaluation(x.detach(), logit.detach(), grad, finite)


def energy(z: Tensor, logit: Tensor) -> Tensor:
    """U(z) = ½‖z‖² − d~(G(z)), (B,)."""
    return -log_prior(z) - logit
