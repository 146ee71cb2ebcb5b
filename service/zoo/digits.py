"""sklearn digits upscaled to 16x16, the fixed train / held-out split, and DCGAN-16 training.

Data: ``sklearn.datasets.load_digits`` (1797 images 8x8, values 0..16), upscaled bilinearly
(``align_corners=False``) to 16x16 and mapped to [-1, 1] by ``x / 8 - 1``. Shape (N, 1, 16, 16).

Split (the training-index rule, shared by the GAN and the classifier): for each class c = 0..9 in turn, the indices
of that class in dataset order are permuted with ``numpy.random.default_rng(SPLIT_SEED)`` (one generator, used
class after class) and the first ``round(HOLDOUT_FRACTION * n_c)`` of them are held out. Everything else is
the training split. The held-out split is never trained on (GAN or classifier); it is the registry's holdout.

GAN training (:func:`train_dcgan`): JS-GAN with the non-saturating G loss, Adam(lr 2e-4, β = (0.5, 0.999)), batch
64 drawn with replacement from the training split by a seeded ``torch.Generator``, ``gan_steps`` alternating
updates; then ``refine_steps`` D updates with G frozen (in eval mode) so D approaches d* for the final G. G's
BatchNorm running statistics are re-estimated as exact averages (momentum None) over ``BN_RECALIBRATION_BATCHES``
batches of fresh latents before the refine phase, so eval-mode G matches the G that D was refined against.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from service.zoo.dcgan import DEFAULT_NZ, Discriminator16, Generator16

SPLIT_SEED = 20_190_601
HOLDOUT_FRACTION = 0.3
N_CLASSES = 10
BN_RECALIBRATION_BATCHES = 50
BN_RECALIBRATION_BATCH_SIZE = 256


class DigitsSplit(NamedTuple):
    """x: (1797, 1, 16, 16) in [-1, 1]; y: (1797,) int64; train_idx / holdout_idx: disjoint sorted int64 indices."""

    x: Tensor
    y: Tensor
    train_idx: Tensor
    holdout_idx: Tensor


def load_digits_16() -> tuple[Tensor, Tensor]:
    """All sklearn digits as (N, 1, 16, 16) float32 in [-1, 1] and labels (N,) int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x8 = torch.from_numpy(d.images.astype(np.float32)).unsqueeze(1)
    x16 = F.interpolate(x8, size=(16, 16), mode="bilinear", align_corners=False)
    return (x16 / 8.0 - 1.0).clamp(-1.0, 1.0), torch.from_numpy(d.target.astype(np.int64))


def split_indices(y: Tensor, fraction: float = HOLDOUT_FRACTION, seed: int = SPLIT_SEED) -> tuple[Tensor, Tensor]:
    """(train_idx, holdout_idx), stratified by class, per the rule in the module doc."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    labels = y.numpy()
    held: list[np.ndarray] = []
    for c in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == c)
        perm = rng.permutation(idx)
        held.append(perm[: round(fraction * idx.size)])
    holdout = np.sort(np.concatenate(held))
    train = np.setdiff1d(np.arange(labels.size), holdout)
    return torch.from_numpy(train).long(), torch.from_numpy(holdout).long()


def digits_split() -> DigitsSplit:
    x, y = load_digits_16()
    train_idx, holdout_idx = split_indices(y)
    return DigitsSplit(x, y, train_idx, holdout_idx)


class DcganConfig(NamedTuple):
    gan_steps: int = 3000
    refine_steps: int = 500
    batch: int = 64
    lr: float = 2e-4
    nz: int = DEFAULT_NZ


class DcganResult(NamedTuple):
    generator: Generator16
    discriminator: Discriminator16
    holdout: Tensor
    config: DcganConfig


def _bce(logit: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, target))


@torch.no_grad()
def recalibrate_batchnorm(g: nn.Module, nz: int, gen: torch.Generator) -> None:
    """Re-estimate G's BatchNorm running statistics as exact averages over fresh latents; leaves G in eval mode."""
    bns = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    g.train()
    for _ in range(BN_RECALIBRATION_BATCHES):
        g(torch.randn(BN_RECALIBRATION_BATCH_SIZE, nz, 1, 1, generator=gen))
    for m in bns:
        m.momentum = 0.1
    g.eval()


def train_dcgan(seed: int, config: DcganConfig | None = None, split: DigitsSplit | None = None) -> DcganResult:
    """Train DCGAN-16 on the training split deterministically from ``seed`` (recipe in the module doc)."""
    cfg = DcganConfig() if config is None else config
    sp = digits_split() if split is None else split
    data = sp.x[sp.train_idx]
    torch.manual_seed(seed)
    g, d = Generator16(nz=cfg.nz), Discriminator16()
    gen = torch.Generator().manual_seed(seed)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    g.train()
    for _ in range(cfg.gan_steps):
        real = data[torch.randint(0, data.shape[0], (cfg.batch,), generator=gen)]
        fake = g(torch.randn(cfg.batch, cfg.nz, 1, 1, generator=gen))
        opt_d.zero_grad(set_to_none=True)
        (_bce(d(real), 1.0) + _bce(d(fake.detach()), 0.0)).backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        _bce(d(fake), 1.0).backward()
        opt_g.step()
    recalibrate_batchnorm(g, cfg.nz, gen)
    g.requires_grad_(False)
    for _ in range(cfg.refine_steps):
        real = data[torch.randint(0, data.shape[0], (cfg.batch,), generator=gen)]
        with torch.no_grad():
            fake = g(torch.randn(cfg.batch, cfg.nz, 1, 1, generator=gen))
        opt_d.zero_grad(set_to_none=True)
        (_bce(d(real), 1.0) + _bce(d(fake), 0.0)).backward()
        opt_d.step()
    d.eval().requires_grad_(False)
    return DcganResult(g, d, sp.x[sp.holdout_idx], cfg)
