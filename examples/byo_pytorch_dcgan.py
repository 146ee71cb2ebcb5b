"""Route (c): a checkpoint pair of pytorch/examples ``dcgan/main.py`` (``netG_epoch_N.pth``, ``netD_epoch_N.pth``).

gansampler ships that script's architecture as ``service.zoo.dcgan64`` (same module layout and parameter names),
so its state_dicts load unchanged. This script stands in for a run of ``main.py --dataset mnist --ngf 16 --ndf 16``:
the classes below are that script's (only ``nc = 1`` and the widths differ from its defaults); it trains them on
sklearn digits upscaled to 64x64 and saves the checkpoints the way main.py does. With your own checkpoints, skip the
training and copy ``netG_epoch_N.pth`` / ``netD_epoch_N.pth`` plus a held-out split into the version directory.

    python examples/byo_pytorch_dcgan.py my-models           # trains ~20 s, writes my-models/dcgan-digits64/1/
    gansampler-server verify --root my-models
    gansampler-server calibrate dcgan-digits64 --root my-models
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from my_gan import digits_split
from registry_entry import save_holdout, sha256_file, version_dir
from torch import nn

nz, ngf, ndf, nc = 100, 16, 16, 1  # main.py: --nz 100 --ngf 16 --ndf 16, nc = 1 for mnist
IMAGE_SIZE = 64
DEFAULT_STEPS = 250  # about 20 s on one CPU core
BATCH = 32


class Generator(nn.Module):  # pytorch/examples dcgan/main.py
    def __init__(self, ngpu: int) -> None:
        super().__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.main(input)


class Discriminator(nn.Module):  # pytorch/examples dcgan/main.py: ends in nn.Sigmoid
    def __init__(self, ngpu: int) -> None:
        super().__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.main(input).view(-1, 1).squeeze(1)


MANIFEST = """\
name = "{name}"
version = 1
description = "pytorch/examples dcgan/main.py checkpoint (nc=1, ngf=ndf=16) on digits upscaled to 64x64"

[latent]
shape = [100, 1, 1]

[output]
kind = "image"
shape = [1, 64, 64]
range = [-1.0, 1.0]

[generator]
format = "state_dict"
file = "netG_epoch_{epoch}.pth"
arch = "service.zoo.dcgan64:Generator"
kwargs = {{ nz = 100, ngf = 16, nc = 1 }}
sha256 = "{g_sha}"

[discriminator]
format = "state_dict"
file = "netD_epoch_{epoch}.pth"
arch = "service.zoo.dcgan64:Discriminator"
kwargs = {{ ndf = 16, nc = 1 }}
output = "probability"
sha256 = "{d_sha}"

[data]
holdout = "holdout.safetensors"
holdout_sha256 = "{h_sha}"
"""


def upscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, 8, 8) -> (N, 1, 64, 64) bilinear, still in [-1, 1]: the same preprocessing for training and holdout."""
    return F.interpolate(x, size=IMAGE_SIZE, mode="bilinear", align_corners=False).clamp(-1, 1).contiguous()


def train(steps: int, seed: int = 0) -> tuple[Generator, Discriminator, torch.Tensor]:
    """main.py's loop: D on a real batch, then on a fake batch (separately), then G; BCELoss on probabilities."""
    torch.manual_seed(seed)
    train_x, holdout = (upscale(t) for t in digits_split(seed))
    net_g, net_d = Generator(1), Discriminator(1)
    crit = nn.BCELoss()
    opt_d = torch.optim.Adam(net_d.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(net_g.parameters(), 2e-4, betas=(0.5, 0.999))
    start = time.perf_counter()
    for _ in range(steps):
        real = train_x[torch.randint(0, len(train_x), (BATCH,))]
        fake = net_g(torch.randn(BATCH, nz, 1, 1))
        err_d = crit(net_d(real), torch.ones(BATCH)) + crit(net_d(fake.detach()), torch.zeros(BATCH))
        opt_d.zero_grad()
        err_d.backward()
        opt_d.step()
        err_g = crit(net_d(fake), torch.ones(BATCH))
        opt_g.zero_grad()
        err_g.backward()
        opt_g.step()
    print(f"trained {steps} steps in {time.perf_counter() - start:.1f} s")
    return net_g, net_d, holdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="registry root to write into (created)")
    p.add_argument("--name", default="dcgan-digits64")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})")
    args = p.parse_args()
    torch.set_num_threads(1)

    net_g, net_d, holdout = train(args.steps)
    vdir = version_dir(args.root, args.name)
    epoch = 0
    torch.save(net_g.state_dict(), vdir / f"netG_epoch_{epoch}.pth")  # exactly what main.py saves
    torch.save(net_d.state_dict(), vdir / f"netD_epoch_{epoch}.pth")
    save_holdout(vdir, holdout)
    (vdir / "model.toml").write_text(MANIFEST.format(
        name=args.name, epoch=epoch, g_sha=sha256_file(vdir / f"netG_epoch_{epoch}.pth"),
        d_sha=sha256_file(vdir / f"netD_epoch_{epoch}.pth"), h_sha=sha256_file(vdir / "holdout.safetensors"),
    ))
    print(f"wrote {vdir}/: model.toml netG_epoch_{epoch}.pth netD_epoch_{epoch}.pth holdout.safetensors")


if __name__ == "__main__":
    main()
