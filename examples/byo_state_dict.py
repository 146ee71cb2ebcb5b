"""Route (b): your GAN as plain ``state_dict`` files plus the import path of your classes.

The server builds ``arch(**kwargs)`` and loads the weights with ``torch.load(weights_only=True)``, so the module
holding your classes must be importable by the server: here ``my_gan`` lives in examples/, hence PYTHONPATH.

    python examples/byo_state_dict.py my-models              # trains ~20 s, writes my-models/my-digits-sd/1/
    PYTHONPATH=examples gansampler-server verify --root my-models
    PYTHONPATH=examples gansampler-server calibrate my-digits-sd --root my-models
    PYTHONPATH=examples gansampler-server serve --models my-models
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from my_gan import DEFAULT_STEPS, NZ, WIDTH, train
from registry_entry import save_holdout, sha256_file, version_dir

MANIFEST = """\
name = "{name}"
version = 1
description = "my conv GAN on 8x8 digits, shipped as state_dicts of my_gan's classes"

[latent]
shape = [{nz}]

[output]
kind = "image"
shape = [1, 8, 8]
range = [-1.0, 1.0]

[generator]
format = "state_dict"
file = "generator.pth"
arch = "my_gan:Generator"
kwargs = {{ nz = {nz}, width = {width} }}
sha256 = "{g_sha}"

[discriminator]
format = "state_dict"
file = "discriminator.pth"
arch = "my_gan:Discriminator"
kwargs = {{ width = {width} }}
output = "logit"
sha256 = "{d_sha}"

[data]
holdout = "holdout.safetensors"
holdout_sha256 = "{h_sha}"
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="registry root to write into (created)")
    p.add_argument("--name", default="my-digits-sd")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})")
    args = p.parse_args()
    torch.set_num_threads(1)

    g, d, holdout = train(args.steps)
    vdir = version_dir(args.root, args.name)
    torch.save(g.state_dict(), vdir / "generator.pth")  # the state_dict, never the whole module
    torch.save(d.state_dict(), vdir / "discriminator.pth")
    save_holdout(vdir, holdout)
    (vdir / "model.toml").write_text(MANIFEST.format(
        name=args.name, nz=NZ, width=WIDTH, g_sha=sha256_file(vdir / "generator.pth"),
        d_sha=sha256_file(vdir / "discriminator.pth"), h_sha=sha256_file(vdir / "holdout.safetensors"),
    ))
    print(f"wrote {vdir}/: model.toml generator.pth discriminator.pth holdout.safetensors")


if __name__ == "__main__":
    main()
