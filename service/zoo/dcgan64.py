"""The 64x64 DCGAN of pytorch/examples ``dcgan/main.py``, with the same module layout and parameter names, so
``netG_epoch_N.pth`` / ``netD_epoch_N.pth`` state_dicts saved by that script load unchanged.

Generator: z (B, nz, 1, 1) -> x (B, nc, 64, 64) in [-1, 1] (Tanh).
Discriminator: x (B, nc, 64, 64) -> probability (B,) (ends in nn.Sigmoid: declare ``output = "probability"``; the
registry strips the sigmoid and serves exact logits).

A manifest for a checkpoint of that script::

    [latent]        shape = [100, 1, 1]
    [output]        kind = "image"; shape = [3, 64, 64]; range = [-1.0, 1.0]
    [generator]     format = "state_dict"; file = "netG_epoch_24.pth"; arch = "service.zoo.dcgan64:Generator"
    [discriminator] format = "state_dict"; file = "netD_epoch_24.pth"; arch = "service.zoo.dcgan64:Discriminator"
                    output = "probability"
"""

from __future__ import annotations

from torch import Tensor, nn

NZ = 100
NGF = 64
NDF = 64
NC = 3


class Generator(nn.Module):
    """pytorch/examples DCGAN generator: 4 -> 8 -> 16 -> 32 -> 64 pixels."""

    def __init__(self, nz: int = NZ, ngf: int = NGF, nc: int = NC) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),  # (ngf*8) x 4 x 4
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),  # (ngf*4) x 8 x 8
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # (ngf*2) x 16 x 16
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),  # ngf x 32 x 32
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # nc x 64 x 64
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    """pytorch/examples DCGAN discriminator: 64 -> 32 -> 16 -> 8 -> 4 -> 1, final Sigmoid; returns (B,)."""

    def __init__(self, ndf: int = NDF, nc: int = NC) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # ndf x 32 x 32
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),  # (ndf*2) x 16 x 16
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),  # (ndf*4) x 8 x 8
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),  # (ndf*8) x 4 x 4
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),  # 1 x 1 x 1
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x).view(-1, 1).squeeze(1)
