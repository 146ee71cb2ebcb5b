"""A user's own GAN: a small conv GAN on sklearn's 8x8 digits, with its own classes (nothing from gansampler).

This file stands for *your* training code. The ``byo_*.py`` scripts next to it train it for a few seconds and
bring it to gansampler three ways (docs/bring-your-own-model.md).

Shapes: latent z (B, NZ); image x (B, 1, 8, 8) in [-1, 1]; ``Discriminator`` returns logits (B, 1).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn

NZ = 16
WIDTH = 64
N_TRAIN = 1400  # the other 397 digits are held out: never trained on, used by gansampler to calibrate D
BATCH = 64
LR = 2e-4
DEFAULT_STEPS = 2000  # about 20 s on one CPU core


class Generator(nn.Module):
    """z (B, nz) -> x (B, 1, 8, 8) in [-1, 1]."""

    def __init__(self, nz: int = NZ, width: int = WIDTH) -> None:
        super().__init__()
        self.width = width
        self.fc = nn.Sequential(nn.Linear(nz, width * 16), nn.BatchNorm1d(width * 16), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1), nn.BatchNorm2d(width // 2), nn.ReLU(),
            nn.Conv2d(width // 2, 1, 3, 1, 1), nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.up(self.fc(z).view(-1, self.width, 4, 4))


class Discriminator(nn.Module):
    """x (B, 1, 8, 8) -> logit (B, 1) (no final sigmoid; trained with BCEWithLogitsLoss)."""

    def __init__(self, width: int = WIDTH) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width // 2, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width // 2, width, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(width * 4, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def digits_split(seed: int = 0) -> tuple[Tensor, Tensor]:
    """(train (1400, 1, 8, 8), holdout (397, 1, 8, 8)) in [-1, 1], a fixed random split."""
    x = load_digits().images.astype(np.float32) / 16.0 * 2.0 - 1.0
    perm = np.random.default_rng(seed).permutation(len(x))
    images = torch.from_numpy(x).unsqueeze(1)
    return images[perm[:N_TRAIN]].contiguous(), images[perm[N_TRAIN:]].contiguous()


def train(steps: int = DEFAULT_STEPS, seed: int = 0) -> tuple[Generator, Discriminator, Tensor]:
    """Train a JS-GAN (non-saturating G loss) for ``steps`` steps; returns (G, D, holdout)."""
    torch.manual_seed(seed)
    train_x, holdout = digits_split(seed)
    g, d = Generator(), Discriminator()
    opt_g = torch.optim.Adam(g.parameters(), LR, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), LR, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(BATCH, 1), torch.zeros(BATCH, 1)
    start = time.perf_counter()
    for _ in range(steps):
        real = train_x[torch.randint(0, len(train_x), (BATCH,))]
        fake = g(torch.randn(BATCH, NZ))
        loss_d = bce(d(real), ones) + bce(d(fake.detach()), zeros)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = bce(d(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    print(f"trained {steps} steps in {time.perf_counter() - start:.1f} s")
    return g.eval(), d.eval(), holdout
