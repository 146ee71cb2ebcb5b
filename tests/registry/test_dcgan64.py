"""A pytorch/examples dcgan/main.py checkpoint pair loads with a short manifest; D's sigmoid is stripped."""

from __future__ import annotations

from pathlib import Path

import tomli_w
import torch

from service.registry import Registry
from service.registry.files import sha256_file
from service.zoo.dcgan64 import Discriminator, Generator


def _weights_init(m: torch.nn.Module) -> None:
    """The script's initialisation (so BatchNorm weights are not all ones)."""
    if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, torch.nn.BatchNorm2d):
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


def test_state_dict_keys_match_the_script() -> None:
    g_keys = set(Generator().state_dict())
    d_keys = set(Discriminator().state_dict())
    assert {"main.0.weight", "main.1.running_mean", "main.12.weight"} <= g_keys
    assert "main.0.bias" not in g_keys  # bias=False everywhere
    assert {"main.0.weight", "main.2.weight", "main.11.weight"} <= d_keys
    assert isinstance(Discriminator().main[-1], torch.nn.Sigmoid)


def test_examples_checkpoint_loads_with_a_short_manifest(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net_g, net_d = Generator(), Discriminator()
    net_g.apply(_weights_init)
    net_d.apply(_weights_init)
    vdir = tmp_path / "models" / "celeba-dcgan" / "1"
    vdir.mkdir(parents=True)
    torch.save(net_g.state_dict(), vdir / "netG_epoch_0.pth")
    torch.save(net_d.state_dict(), vdir / "netD_epoch_0.pth")
    manifest = {
        "name": "celeba-dcgan",
        "version": 1,
        "latent": {"shape": [100, 1, 1]},
        "output": {"kind": "image", "shape": [3, 64, 64], "range": [-1.0, 1.0]},
        "generator": {"format": "state_dict", "file": "netG_epoch_0.pth", "arch": "service.zoo.dcgan64:Generator",
                      "sha256": sha256_file(vdir / "netG_epoch_0.pth")},
        "discriminator": {"format": "state_dict", "file": "netD_epoch_0.pth", "arch": "service.zoo.dcgan64:Discriminator",
                          "output": "probability", "sha256": sha256_file(vdir / "netD_epoch_0.pth")},
    }  # fmt: skip
    (vdir / "model.toml").write_text(tomli_w.dumps(manifest))
    reg = Registry(tmp_path / "models")
    reg.load_all()
    model = reg.get("celeba-dcgan")
    assert any("sigmoid" in n and "removed" in n for n in model.notes)
    z = torch.randn(3, 100, 1, 1)
    with torch.no_grad():
        x = model.pair.generator(z)
        logit = model.pair.logit(x)
        net_d.eval()
        p = net_d(x)
    assert x.shape == (3, 3, 64, 64) and float(x.abs().max()) <= 1.0
    assert logit.shape == (3,)  # one logit per image
    assert torch.allclose(torch.sigmoid(logit), p, atol=1e-6)
    zg = torch.randn(2, 100, 1, 1, requires_grad=True)
    (grad,) = torch.autograd.grad(model.pair.logit(model.pair.generator(zg)).sum(), zg)
    assert grad.shape == zg.shape and bool(torch.isfinite(grad).all())
