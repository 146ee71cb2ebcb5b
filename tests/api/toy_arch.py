"""Tiny networks for API and engine tests, referenced by import path ``tests.api.toy_arch:<Class>``.

``IdentityG`` + ``GaussLogitD`` is the analytic pair of docs/algorithms.md §5 test 1: G(z) = z, p0 = N(0, 1) and
d*(x) = log N(x; 1, 0.5²) − log N(x; 0, 1), so the latent target is exactly N(1, 0.5²).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

FAIL_BATCH = 7  # FailingD raises on a batch of exactly this many rows
TARGET_MEAN = 1.0
TARGET_STD = 0.5


class IdentityG(nn.Module):
    """z (B, 1) -> x = z (B, 1). A unit scale parameter so the file holds a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z: Tensor) -> Tensor:
        return z * self.scale


class GaussLogitD(nn.Module):
    """x (B, 1) -> d*(x) = log N(x; 1, 0.5²) − log N(x; 0, 1), (B,)."""

    def __init__(self) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.tensor(TARGET_MEAN))

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, 0]
        log_pd = -0.5 * ((x - self.mean) / TARGET_STD) ** 2 - math.log(TARGET_STD)
        return log_pd + 0.5 * x**2


class FailingD(GaussLogitD):
    """GaussLogitD that raises on a batch of exactly FAIL_BATCH rows (a model bug surfacing mid-sampling)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] == FAIL_BATCH:
            raise RuntimeError("synthetic failure in the discriminator")
        return super().forward(x)


class NanG(IdentityG):
    """G(z) = z, except rows with z > 1 give NaN (a generator that blows up in part of the latent space)."""

    def forward(self, z: Tensor) -> Tensor:
        x = z * self.scale
        return torch.where(z > 1.0, torch.full_like(x, float("nan")), x)


class ImageG(nn.Module):
    """z (B, 3) -> x (B, 1, 4, 4) in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 16)

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.lin(z)).view(-1, 1, 4, 4)


class ImageD(nn.Module):
    """x (B, 1, 4, 4) -> logit (B,)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x.flatten(1))[:, 0]


class MlpG(nn.Module):
    """z (B, 2) -> x (B, 2) in [-1, 1] (exportable to ONNX)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MlpD(nn.Module):
    """x (B, 2) -> logit (B,)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, 0]
