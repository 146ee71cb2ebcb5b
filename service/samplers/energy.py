"""The latent target shared by every latent-space sampler (docs/algorithms.md §0).

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


def rows_finite(*tensors: Tensor) -> Tensor:
    """(B,) bool: every element of row ``i`` of every tensor is finite (a NaN image with a finite logit is still
    trouble). Each tensor is (B,) or (B, ...).

    A row is finite exactly when its max and min are: both reductions propagate NaN, and an infinity is the max or
    the min. On a CPU ``isfinite(x).all(1)`` runs a bool pass over every element (and ``flatten`` copies a
    channels_last image first): 276 vs 113 µs for 256 16x16 images, 4.8 vs 0.28 ms for 256 3x64x64 ones. Short rows
    (a 2-D sample, a small latent) keep their values. Every tensor's per-row columns (values, or max and min) then
    go through one ``isfinite`` and one ``all``: a step's logit, x and gradient cost four small kernels on a small
    model instead of ten (each a few µs on a CPU, a launch on a GPU).
    """
    cols: list[Tensor] = []
    for t in tensors:
        t = t.detach()
        b = t.shape[0]
        if t.dim() == 1:
            cols.append(t.reshape(b, 1))
            continue
        row = math.prod(t.shape[1:])
        if row <= ELEMENTWISE_ROW_MAX:
            cols.append(t.reshape(b, row))
        else:
            dims = tuple(range(1, t.dim()))
            cols.append(t.amax(dims).reshape(b, 1))
            cols.append(t.amin(dims).reshape(b, 1))
    if len(cols) == 1:
        return torch.isfinite(cols[0]).all(1)
    dtype = cols[0].dtype
    for c in cols[1:]:
        dtype = torch.promote_types(dtype, c.dtype)  # never narrower than any input: no overflow to inf
    return torch.isfinite(torch.cat([c.to(dtype) for c in cols], 1)).all(1)


def log_prior(z: Tensor) -> Tensor:
    """log N(z; 0, I) up to its constant, (B,)."""
    return -0.5 * z.flatten(1).pow(2).sum(1)


def evaluate(pair: GanPair, z: Tensor, with_grad: bool) -> Evaluation:
    """One forward of D∘G, plus one backward w.r.t. z only when ``with_grad`` (never ``.backward()``)."""
    if not with_grad:
        with torch.no_grad():
            x = pair.generator(z)
            logit = pair.logit(x).reshape(-1)
        return Evaluation(x, logit, None, rows_finite(logit, x))
    with torch.enable_grad():
        zg = z.detach().requires_grad_(True)
        x = pair.generator(zg)
        logit = pair.logit(x).reshape(-1)
        if logit.requires_grad:
            (g,) = torch.autograd.grad(logit.sum(), zg, allow_unused=True)
        else:
            g = None
        grad = torch.zeros_like(zg) if g is None else g  # a logit that ignores z has zero gradient
    finite = rows_finite(logit, grad, x)
    grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)  # zero every non-finite entry
    return Evaluation(x.detach(), logit.detach(), grad, finite)


def energy(z: Tensor, logit: Tensor) -> Tensor:
    """U(z) = ½‖z‖² − d~(G(z)), (B,)."""
    return -log_prior(z) - logit
