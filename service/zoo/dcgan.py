"""DCGAN-16: a small DCGAN for 16x16 single-channel images (sklearn digits upscaled), range [-1, 1].

Shapes: ``Generator16`` maps z (B, nz, 1, 1) (or (B, nz)) -> x (B, 1, 16, 16) through tanh;
``Discriminator16`` maps x (B, 1, 16, 16) -> raw logit d(x) (B,).

G draws an 8x8 image and ends with a fixed bilinear 2x upsampling (``align_corners=False``), the very map that
turned sklearn's 8x8 digits into the 16x16 training data. The real images therefore lie in a 64-dimensional linear
subspace of R^256; a G without this layer leaves it, and D then separates real from fake perfectly by
high-frequency content (held-out AUC 1.0 measured), which says nothing about digit quality and makes D useless as a
density-ratio estimate for the samplers.

D has no BatchNorm, so its logit for one sample never depends on the rest of the batch (train or eval mode).
G has BatchNorm (as in DCGAN); samplers run it in eval mode, on running statistics that the training script
re-estimates over many latents after training (see :mod:`service.zoo.digits`).
"""

from __future__ import annotations

from torch import Tensor, nn

DEFAULT_NZ = 64
DEFAULT_NGF = 32
DEFAULT_NDF = 32
IMAGE_SIZE = 16
LEAKY_SLOPE = 0.2


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class Generator16(nn.Module):
    """z (B, nz, 1, 1) -> x (B, 1, 16, 16) in [-1, 1]: 1 -> 4 -> 8 transposed convolutions, a 3x3 convolution to
    one channel, tanh, then the fixed bilinear upsampling 8 -> 16."""

    def __init__(self, nz: int = DEFAULT_NZ, ngf: int = DEFAULT_NGF) -> None:
        super().__init__()
        _check_positive("nz", nz)
        _check_positive("ngf", ngf)
        self.nz = nz
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),  # 4x4
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # 8x8
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.Conv2d(ngf * 2, 1, 3, 1, 1, bias=False),  # 8x8, one channel
            nn.Tanh(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),  # 16x16, as the data
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.reshape(z.shape[0], self.nz, 1, 1))


class Discriminator16(nn.Module):
    """x (B, 1, 16, 16) -> raw logit (B,): 16 -> 8 -> 4 strided convolutions, then a 4x4 convolution to one logit."""

    def __init__(self, ndf: int = DEFAULT_NDF) -> None:
        super().__init__()
        _check_positive("ndf", ndf)
        self.net = nn.Sequential(
            nn.Conv2d(1, ndf, 4, 2, 1),  # 8x8
            nn.LeakyReLU(LEAKY_SLOPE, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1),  # 4x4
            nn.LeakyReLU(LEAKY_SLOPE, True),
            nn.Conv2d(ndf * 2, 1, 4, 1, 0),  # 1x1
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], 1, IMAGE_SIZE, IMAGE_SIZE)).reshape(-1)
