"""A small CNN digits classifier whose penultimate features define the digits Fréchet distance.

Shapes: x (B, 1, 16, 16) in [-1, 1] -> logits (B, 10); :meth:`DigitsClassifier.features` -> (B, FEATURE_DIM).

Trained by ``python -m service.zoo.train digits-classifier`` on the digits TRAIN split only (the rule in
:mod:`service.zoo.digits`), with Adam, cross-entropy and random ±1 pixel shifts; its accuracy on the held-out split
is recorded in its ``training.toml``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from service.zoo.digits import N_CLASSES, DigitsSplit, digits_split

FEATURE_DIM = 64
CLASSIFIER_DIR = "_eval/digits-classifier"
WEIGHTS_FILE = "classifier.safetensors"
MAX_SHIFT = 1


class DigitsClassifier(nn.Module):
    """conv 32 -> pool -> conv 64 -> pool -> fc FEATURE_DIM (features) -> fc 10."""

    def __init__(self, feature_dim: int = FEATURE_DIM, n_classes: int = N_CLASSES) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (B, feature_dim)."""
        return self.body(x.reshape(x.shape[0], 1, 16, 16))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ClassifierConfig(NamedTuple):
    steps: int = 1500
    batch: int = 64
    lr: float = 1e-3


class ClassifierResult(NamedTuple):
    model: DigitsClassifier
    holdout_accuracy: float
    config: ClassifierConfig


def random_shift(x: Tensor, gen: torch.Generator, max_shift: int = MAX_SHIFT) -> Tensor:
    """Shift each image (B, 1, H, W) by an integer offset in [-max_shift, max_shift]² with edge padding."""
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, :, None].expand(b, h, w)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, :].expand(b, h, w)
    return padded[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)


@torch.no_grad()
def accuracy(model: DigitsClassifier, x: Tensor, y: Tensor) -> float:
    return float((model(x).argmax(1) == y).double().mean())


def train_classifier(
    seed: int, config: ClassifierConfig | None = None, split: DigitsSplit | None = None
) -> ClassifierResult:
    """Train on the training split (deterministic from ``seed``); report accuracy on the held-out split."""
    cfg = ClassifierConfig() if config is None else config
    sp = digits_split() if split is None else split
    x, y = sp.x[sp.train_idx], sp.y[sp.train_idx]
    torch.manual_seed(seed)
    model = DigitsClassifier()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    for _ in range(cfg.steps):
        i = torch.randint(0, x.shape[0], (cfg.batch,), generator=gen)
        loss = F.cross_entropy(model(random_shift(x[i], gen)), y[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval().requires_grad_(False)
    acc = accuracy(model, sp.x[sp.holdout_idx], sp.y[sp.holdout_idx])
    return ClassifierResult(model, acc, cfg)
