"""2-D toy data, their quality targets, and GAN training for the 2-D demo models.

Data (all in roughly [-4.5, 4.5]²):

- ``gaussians25``: a 5x5 grid of isotropic Gaussians, means on {-4, -2, 0, 2, 4}², sigma = 0.05, equal weights
  (the MH-GAN paper's toy study).
- ``swissroll``: t = 1.5π(1 + 2u), u ~ U(0, 1); x = (t cos t, t sin t) / 3.5 + N(0, 0.1² I).
  Its quality "modes" are 10 equal-length intervals of t (uniform under the data).

Training (:func:`train_toy`), JS-GAN with the non-saturating G loss, Adam(β = (0.5, 0.999)):

1. ``gan_steps`` alternating D/G updates on minibatches drawn fresh from the training stream
   (``torch.Generator`` seeded with ``seed``).
2. ``refine_steps`` further D updates with G frozen (the MH-GAN recipe of refining D for the final G): D moves
   towards the optimal d* = log p_d − log p_g of *this* G, which is what every sampler assumes.

The GAN phase is deliberately short for ``gaussians25`` (3000 steps; 2000 left raw G at 6% HQ samples, 8000 at
96%): with a 2-D latent and a continuous G, raw samples under-cover some modes and fall between modes, while the
refined D scores the modes well: room for the samplers. Measured with the defaults and seed 0 (2500 raw samples,
:mod:`service.zoo.quality` rules): HQ fraction 0.47, 16/25 modes covered, mode KL 0.59; held-out calibration AUC of
D 0.97. The swiss roll (4000 + 3000 steps): HQ 0.77, 9/10 segments covered; AUC 0.96. The refinement lengths were
chosen with ``benchmarks/quality.py`` among {1000, 2000, 3000, 4000, 6000, 8000}: longer refinement sharpens D
(the grid's calibrated AUC rises to 0.98) but leaves MH's mode balance worse than at the lengths kept.

The held-out split is a fresh sample set drawn from a separate stream (seed + ``HOLDOUT_SEED_OFFSET``) that the
training loop never touches; it is used for calibration and MH's ``real`` init.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from service.zoo.mlp import Discriminator, Generator
from service.zoo.quality import ModeTarget

GRID_VALUES = (-4.0, -2.0, 0.0, 2.0, 4.0)
GRID_SIGMA = 0.05
SWISSROLL_SIGMA = 0.1
SWISSROLL_SCALE = 3.5
SWISSROLL_T_RANGE = (1.5 * math.pi, 4.5 * math.pi)
SWISSROLL_SEGMENTS = 10
SWISSROLL_REFERENCE_POINTS = 4000
HOLDOUT_SEED_OFFSET = 1_000_003
HOLDOUT_SIZE = 5000

Sampler2D = Callable[[int, torch.Generator], Tensor]


def grid_means() -> Tensor:
    """(25, 2) means of the 5x5 grid, row-major over (x, y)."""
    v = torch.tensor(GRID_VALUES)
    return torch.cartesian_prod(v, v)


def sample_gaussians25(n: int, gen: torch.Generator) -> Tensor:
    """n samples (n, 2) of the 25-Gaussian grid."""
    means = grid_means()
    k = torch.randint(0, means.shape[0], (n,), generator=gen)
    return means[k] + GRID_SIGMA * torch.randn(n, 2, generator=gen)


def _roll(t: Tensor) -> Tensor:
    return torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / SWISSROLL_SCALE


def sample_swissroll(n: int, gen: torch.Generator) -> Tensor:
    """n samples (n, 2) of the swiss roll."""
    lo, hi = SWISSROLL_T_RANGE
    t = lo + (hi - lo) * torch.rand(n, generator=gen)
    return _roll(t) + SWISSROLL_SIGMA * torch.randn(n, 2, generator=gen)


def gaussians25_target() -> ModeTarget:
    return ModeTarget(grid_means(), torch.arange(25), GRID_SIGMA, 25)


def swissroll_target(n_points: int = SWISSROLL_REFERENCE_POINTS) -> ModeTarget:
    """A dense polyline of the noiseless roll, labelled by which of the 10 equal t-intervals a point lies in."""
    lo, hi = SWISSROLL_T_RANGE
    t = torch.linspace(lo, hi, n_points, dtype=torch.float64)
    labels = ((t - lo) / (hi - lo) * SWISSROLL_SEGMENTS).long().clamp(max=SWISSROLL_SEGMENTS - 1)
    return ModeTarget(_roll(t), labels, SWISSROLL_SIGMA, SWISSROLL_SEGMENTS)


class ToyConfig(NamedTuple):
    """Hyperparameters of one 2-D demo model (all step counts are optimiser steps)."""

    gan_steps: int
    refine_steps: int
    batch: int = 256
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    latent_dim: int = 2
    hidden: int = 128
    depth: int = 3


class ToyData(NamedTuple):
    sample: Sampler2D
    target: Callable[[], ModeTarget]
    config: ToyConfig
    description: str


TOY_DATA: dict[str, ToyData] = {
    "gaussians25": ToyData(
        sample_gaussians25,
        gaussians25_target,
        ToyConfig(gan_steps=3000, refine_steps=2000),
        "MLP GAN on a 5x5 grid of Gaussians (sigma 0.05), JS-GAN loss, short training + D refined for the final G",
    ),
    "swissroll": ToyData(
        sample_swissroll,
        swissroll_target,
        ToyConfig(gan_steps=4000, refine_steps=3000),
        "MLP GAN on a 2-D swiss roll (noise 0.1), JS-GAN loss, D refined for the final G",
    ),
}


class ToyResult(NamedTuple):
    generator: Generator
    discriminator: Discriminator
    holdout: Tensor
    config: ToyConfig


def holdout_set(name: str, seed: int, n: int = HOLDOUT_SIZE) -> Tensor:
    """The held-out real split (n, 2): drawn from its own stream, never seen by training."""
    gen = torch.Generator().manual_seed(seed + HOLDOUT_SEED_OFFSET)
    return TOY_DATA[name].sample(n, gen)


def _d_loss(d: Discriminator, real: Tensor, fake: Tensor) -> Tensor:
    lr, lf = d(real), d(fake)
    return F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr)) + F.binary_cross_entropy_with_logits(
        lf, torch.zeros_like(lf)
    )


def train_toy(name: str, seed: int, config: ToyConfig | None = None) -> ToyResult:
    """Train the 2-D demo model ``name`` deterministically from ``seed`` (module doc has the recipe)."""
    if name not in TOY_DATA:
        raise ValueError(f"name must be one of {sorted(TOY_DATA)}, got {name!r}")
    data = TOY_DATA[name]
    cfg = data.config if config is None else config
    torch.manual_seed(seed)
    g = Generator(latent_dim=cfg.latent_dim, hidden=cfg.hidden, depth=cfg.depth)
    d = Discriminator(hidden=cfg.hidden, depth=cfg.depth)
    gen = torch.Generator().manual_seed(seed)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
    for _ in range(cfg.gan_steps):
        real = data.sample(cfg.batch, gen)
        fake = g(torch.randn(cfg.batch, cfg.latent_dim, generator=gen))
        opt_d.zero_grad(set_to_none=True)
        _d_loss(d, real, fake.detach()).backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        lf = d(fake)
        F.binary_cross_entropy_with_logits(lf, torch.ones_like(lf)).backward()
        opt_g.step()
    g.eval().requires_grad_(False)
    for _ in range(cfg.refine_steps):
        real = data.sample(cfg.batch, gen)
        with torch.no_grad():
            fake = g(torch.randn(cfg.batch, cfg.latent_dim, generator=gen))
        opt_d.zero_grad(set_to_none=True)
        _d_loss(d, real, fake).backward()
        opt_d.step()
    d.eval().requires_grad_(False)
    return ToyResult(g, d, holdout_set(name, seed), cfg)
