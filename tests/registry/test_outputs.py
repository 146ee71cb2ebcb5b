"""Outputs to images: range mapping, layout, PNG round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from service.registry.outputs import to_png_bytes, to_uint8_images
from service.registry.schema import OutputSpec

GREY = OutputSpec(kind="image", shape=(1, 2, 2), range=(-1.0, 1.0))
RGB = OutputSpec(kind="image", shape=(3, 2, 3), range=(0.0, 1.0))


def test_range_maps_to_0_255_with_clipping_and_nan() -> None:
    x = torch.tensor([[[[-1.0, 1.0], [0.0, 5.0]]], [[[float("nan"), -7.0], [0.5, -0.5]]]])
    img = to_uint8_images(x, GREY)
    assert img.dtype == np.uint8 and img.shape == (2, 2, 2, 1)
    assert img[0, :, :, 0].tolist() == [[0, 255], [128, 255]]
    assert img[1, :, :, 0].tolist() == [[0, 0], [191, 64]]


def test_channels_last_layout() -> None:
    x = torch.zeros(1, 3, 2, 3)
    x[0, 0] = 1.0  # red channel full
    img = to_uint8_images(x, RGB)
    assert img.shape == (1, 2, 3, 3)
    assert img[0, :, :, 0].min() == 255 and img[0, :, :, 1:].max() == 0


@pytest.mark.parametrize(("spec", "mode"), [(GREY, "L"), (RGB, "RGB")])
def test_png_round_trip(spec: OutputSpec, mode: str) -> None:
    lo, hi = spec.range or (0.0, 1.0)
    x = torch.rand(3, *spec.shape) * (hi - lo) + lo
    pngs = to_png_bytes(x, spec)
    assert len(pngs) == 3
    expected = to_uint8_images(x, spec)
    for png, exp in zip(pngs, expected, strict=True):
        assert png.startswith(b"\x89PNG")
        im = Image.open(io.BytesIO(png))
        assert im.mode == mode and im.size == (spec.shape[2], spec.shape[1])
        arr = np.asarray(im)
        assert np.array_equal(arr.reshape(exp.shape), exp)


def test_vector_outputs_and_wrong_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="only image outputs"):
        to_uint8_images(torch.zeros(2, 2), OutputSpec(kind="vector", shape=(2,)))
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 2, 2\)"):
        to_uint8_images(torch.zeros(2, 1, 3, 3), GREY)
