"""Shapes and argument checks of the zoo architectures."""

from __future__ import annotations

import pytest
import torch

from service.zoo.classifier import FEATURE_DIM, DigitsClassifier, random_shift
from service.zoo.dcgan import Discriminator16, Generator16
from service.zoo.mlp import Discriminator, Generator


def test_mlp_shapes() -> None:
    g, d = Generator(latent_dim=3, out_dim=2, hidden=16, depth=2), Discriminator(in_dim=2, hidden=16, depth=2)
    x = g(torch.randn(5, 3))
    assert x.shape == (5, 2)
    assert d(x).shape == (5,)


def test_dcgan16_shapes_and_range() -> None:
    g, d = Generator16(nz=8, ngf=4).eval(), Discriminator16(ndf=4).eval()
    with torch.no_grad():
        x = g(torch.randn(3, 8, 1, 1))
    assert x.shape == (3, 1, 16, 16)
    assert float(x.abs().max()) <= 1.0
    assert d(x).shape == (3,)
    assert g(torch.randn(2, 8)).shape == (2, 1, 16, 16)  # flat latents are accepted too


def test_discriminator_logit_of_a_row_does_not_depend_on_the_batch() -> None:
    torch.manual_seed(0)
    d = Discriminator16(ndf=4).eval()
    x = torch.randn(6, 1, 16, 16)
    torch.testing.assert_close(d(x)[2:3], d(x[2:3]))


def test_classifier_shapes() -> None:
    c = DigitsClassifier().eval()
    x = torch.randn(4, 1, 16, 16)
    assert c(x).shape == (4, 10)
    assert c.features(x).shape == (4, FEATURE_DIM)


def test_random_shift_moves_images_by_at_most_one_pixel() -> None:
    x = torch.zeros(64, 1, 16, 16)
    x[:, 0, 8, 8] = 1.0
    y = random_shift(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    pos = y.flatten(1).argmax(1)
    rows, cols = pos // 16, pos % 16
    assert set(rows.tolist()) == {7, 8, 9}
    assert set(cols.tolist()) == {7, 8, 9}


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (Generator, {"hidden": 0}, "hidden"),
        (Discriminator, {"depth": -1}, "depth"),
        (Generator16, {"nz": 0}, "nz"),
        (Discriminator16, {"ndf": 0}, "ndf"),
    ],
)
def test_bad_sizes_name_the_argument(cls: type, kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be a positive integer, got"):
        cls(**kwargs)
