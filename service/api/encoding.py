"""Sample encodings: base64 PNG, nested float lists, and the ``application/x-npz`` body.

Shapes: ``x`` (n, *output_shape) float32 in the model's output range ``(lo, hi)``; an image is (C, H, W) with
C ∈ {1, 3}.

The arithmetic here is numpy's, not torch's: a large body is encoded in a pool thread, and a parallel torch op there
would start a second OpenMP team beside the device worker's (``service.engine.threads``).
"""

from __future__ import annotations

import base64
import io
import json
import math
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from service.samplers.diagnostics import host_array

NPZ_MEDIA_TYPE = "application/x-npz"
PNG_CHANNELS = {1: "L", 3: "RGB"}


def can_png(kind: str, shape: tuple[int, ...]) -> str | None:
    """None when samples of this kind/shape can be PNG-encoded, else the reason."""
    if kind != "image":
        return f"output 'png' needs an image model, this model's output kind is {kind!r}"
    if len(shape) != 3 or shape[0] not in PNG_CHANNELS:
        return f"output 'png' needs (C, H, W) with C in (1, 3), got shape {list(shape)}"
    return None


def to_png(x: Tensor, value_range: tuple[float, float]) -> list[str]:
    """(n, C, H, W) -> n base64 PNG strings, mapping ``value_range`` to 0..255."""
    lo, hi = value_range
    scaled = (_host_f32(x) - np.float32(lo)) / np.float32(hi - lo) * np.float32(255.0)
    u8 = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    out = []
    for img in u8:
        mode = PNG_CHANNELS[img.shape[0]]
        arr = img[0] if mode == "L" else np.transpose(img, (1, 2, 0))
        buf = io.BytesIO()
        Image.fromarray(arr, mode=mode).save(buf, format="PNG")
        out.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


def to_lists(x: Tensor) -> list[Any]:
    """(n, ...) -> nested lists of Python floats (non-finite values as None, which JSON can carry)."""
    a = _host_f32(x)
    if bool(np.isfinite(a).all()):  # the usual case: no per-element walk over the lists
        return a.tolist()
    return _finite_or_none(a.tolist())


def _host_f32(x: Tensor) -> np.ndarray:
    """``x`` as a float32 numpy array on the host (no copy when it already is one; bfloat16 samples of a model run
    with precision = "bfloat16" are widened exactly)."""
    return host_array(x).astype(np.float32, copy=False)


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, list):
        return [_finite_or_none(e) for e in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def finite_or_none(v: Any) -> Any:
    """Replace non-finite floats in nested lists / dicts by None (JSON has no NaN)."""
    if isinstance(v, dict):
        return {k: finite_or_none(e) for k, e in v.items()}
    return _finite_or_none(v)


def to_npz(samples: Tensor, z: Tensor, logit: Tensor, meta: dict[str, Any]) -> bytes:
    """The npz body: ``samples`` (n, *shape) float32, ``z`` (n, *latent), ``logit_final`` (n,), ``meta.json``."""
    buf = io.BytesIO()
    arrays: dict[str, Any] = {
        "samples": _host_f32(samples),
        "z": _host_f32(z),
        "logit_final": _host_f32(logit),
        "meta.json": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
    }
    np.savez(buf, **arrays)
    return buf.getvalue()
