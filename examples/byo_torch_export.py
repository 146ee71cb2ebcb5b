"""Route (a): your GAN as two ``torch.export`` archives (.pt2). The server needs no Python class of yours.

    python examples/byo_torch_export.py my-models            # trains ~20 s, writes my-models/my-digits/1/
    gansampler-server verify --root my-models
    gansampler-server calibrate my-digits --root my-models
    gansampler-server serve --models my-models
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from my_gan import DEFAULT_STEPS, NZ, train
from registry_entry import export_dynamic_batch, save_holdout, sha256_file, version_dir

MANIFEST = """\
name = "{name}"
version = 1
description = "my conv GAN on 8x8 digits, shipped as torch.export archives"

[latent]
shape = [{nz}]

[output]
kind = "image"
shape = [1, 8, 8]
range = [-1.0, 1.0]

[generator]
format = "torch_export"
file = "generator.pt2"
sha256 = "{g_sha}"

[discriminator]
format = "torch_export"
file = "discriminator.pt2"
output = "logit"
sha256 = "{d_sha}"

[data]
holdout = "holdout.safetensors"
holdout_sha256 = "{h_sha}"
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="registry root to write into (created)")
    p.add_argument("--name", default="my-digits")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})")
    args = p.parse_args()
    torch.set_num_threads(1)

    g, d, holdout = train(args.steps)
    vdir = version_dir(args.root, args.name)
    export_dynamic_batch(g, torch.randn(2, NZ), vdir / "generator.pt2")
    export_dynamic_batch(d, torch.randn(2, 1, 8, 8), vdir / "discriminator.pt2")
    save_holdout(vdir, holdout)
    (vdir / "model.toml").write_text(MANIFEST.format(
        name=args.name, nz=NZ, g_sha=sha256_file(vdir / "generator.pt2"),
        d_sha=sha256_file(vdir / "discriminator.pt2"), h_sha=sha256_file(vdir / "holdout.safetensors"),
    ))
    print(f"wrote {vdir}/: model.toml generator.pt2 discriminator.pt2 holdout.safetensors")


if __name__ == "__main__":
    main()
