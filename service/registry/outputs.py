"""Turning G's outputs into images for the API: the manifest's ``[output] range`` maps to 0..255."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from service.registry.schema import Manifest, OutputSpec

PNG_COMPRESS_LEVEL = 6


def _spec(spec: OutputSpec | Manifest) -> OutputSpec:
    return spec.output if isinstance(spec, Manifest) else spec


def to_uint8_images(x: Tensor, spec: OutputSpec | Manifest) -> np.ndarray:
    """(N, C, H, W) floats in ``spec.range`` -> (N, H, W, C) uint8, clipped; NaN becomes 0.

    Raises ValueError for vector outputs or a shape other than (N, *spec.shape).
    """
    out = _spec(spec)
    if out.kind != "image" or out.range is None:
        raise ValueError(f"output.kind is {out.kind!r}: only image outputs convert to images")
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(out.shape):
        raise ValueError(f"expected images of shape (N, {', '.join(map(str, out.shape))}), got {tuple(x.shape)}")
    lo, hi = out.range
    scaled = (x.detach().to("cpu", torch.float64) - lo) * (255.0 / (hi - lo))
    scaled = torch.nan_to_num(scaled, nan=0.0).clamp(0, 255).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).contiguous().numpy()


def to_png_bytes(x: Tensor, spec: OutputSpec | Manifest) -> list[bytes]:
    """One PNG file (bytes) per image of ``x`` (N, C, H, W): C = 1 grey, 3 RGB, 4 RGBA."""
    images = to_uint8_images(x, spec)
    result = []
    for img in images:
        pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)  # uint8 2-D: L, 3: RGB, 4: RGBA
        buf = io.BytesIO()
        pil.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        result.append(buf.getvalue())
    return result
