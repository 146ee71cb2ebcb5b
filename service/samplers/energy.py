"""The latent target shared by every latent-space sampler (ALGORITHMS.md §0).

    pi(z) ∝ p0(z) · exp(d~(G(z))),      U(z) = ½‖z‖² − d~(G(z)),      p0 = N(0, I).

Shapes: z (B, *latent_shape); every per-row scalar is (B,).
"""

from __future__ import annotations

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


def _rows_finite(x: Tensor) -> Tensor:
    """(B,) bool: every element of the row is finite (a NaN image with a finite logit is still trouble)."""
    return torch.isfinite(x.detach().flatten(1)).all(1)


def log_prior(z: Tensor) -> Tensor:
    """log N(z; 0, I) up to its constant, (B,)."""
    return -0.5 * z.flatten(1).pow(2).sum(1)


def evaluate(pair: GanPair, z: Tensor, with_grad: bool) -> Evaluation:
    """One forward of D∘G, plus one backward w.r.t. z only when ``with_grad`` (never ``.backward()``)."""
    if not with_grad:
        with torch.no_grad():
            x = pair.generator(z)
            logit = pair.logit(x).reshape(-1)
        return Evaluation(x, logit, None, torch.isfinite(logit) & _rows_finite(x))
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
    finite = torch.isfinite(logit) & grad_ok.flatten(1).all(1) & _rows_finite(x)
    grad = torch.where(grad_ok, grad, 0.0)
    return Evaluation(x.detach(), logit.detach(), grad, finite)


def energy(z: Tensor, logit: Tensor) -> Tensor:
    """U(z) = ½‖z‖² − d~(G(z)), (B,)."""
    return -log_prior(z) - logit
