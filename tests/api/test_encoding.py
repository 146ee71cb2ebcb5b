"""Sample encodings: JSON lists carry non-finite values as null, finite ones exactly."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import torch
from PIL import Image

from service.api.encoding import to_lists, to_npz, to_png


def test_finite_samples_are_plain_float_lists() -> None:
    x = torch.tensor([[0.1, -2.5], [3.0, 1e-30]])
    out = to_lists(x)
    assert out == x.tolist()
    assert all(type(v) is float for row in out for v in row)


def test_non_finite_values_become_none_at_any_depth() -> None:
    x = torch.tensor([[[0.5, math.nan]], [[math.inf, -math.inf]], [[1.0, 2.0]]])
    assert to_lists(x) == [[[0.5, None]], [[None, None]], [[1.0, 2.0]]]


def _decode(png_b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png_b64))))


def test_png_maps_the_value_range_to_0_255_with_rounding_and_clipping() -> None:
    # (1, 1, 1, 7) in range (-1, 1): ends, the midpoint, out-of-range values, and values that round half to even
    v = [-1.0, 1.0, 0.0, -3.0, 2.5, -1.0 + 2 * 0.5 / 255, -1.0 + 2 * 1.5 / 255]
    x = torch.tensor(v, dtype=torch.float32).reshape(1, 1, 1, 7)
    got = _decode(to_png(x, (-1.0, 1.0))[0])
    expect = ((x - -1.0) / 2.0 * 255.0).round().clamp(0, 255).to(torch.uint8).reshape(1, 7).numpy()
    assert got.tolist() == expect.tolist()
    assert got[0, :5].tolist() == [0, 255, 128, 0, 255]


def test_rgb_png_keeps_channels_and_bfloat16_samples_encode() -> None:
    x = torch.zeros(2, 3, 2, 2)
    x[1, 0] = 1.0  # red, fully on, in range (0, 1)
    pngs = to_png(x.bfloat16(), (0.0, 1.0))
    img = _decode(pngs[1])
    assert img.shape == (2, 2, 3) and img[..., 0].min() == 255 and img[..., 1:].max() == 0
    assert to_lists(x.bfloat16()) == x.tolist()
    with np.load(io.BytesIO(to_npz(x.bfloat16(), torch.zeros(2, 4), torch.zeros(2), {"a": 1}))) as z:
        assert z["samples"].dtype == np.float32 and z["samples"].shape == (2, 3, 2, 2)


def test_response_bodies_at_the_traces_level_run_no_torch_op() -> None:
    """Every response body is built outside the device worker (on the event loop, or in a pool thread when large).
    A parallel torch op there starts a second OpenMP thread team beside the worker's, which made every later step
    of a served MLP about 2x slower after one ``traces`` request; so the whole path, from the engine's result to the
    JSON and npz bodies with ESS, split-R-hat and the acceptance curve, dispatches no torch op of its own."""
    from types import SimpleNamespace

    from service.api.results import npz_body, response_body
    from tests.engine.helpers import GAUSS, config, engine, work
    from tests.torch_ops import RecordOps

    e = engine(config(max_batch=64, block_proposals=64))
    try:
        w = work("mh", n=6, seed=3, steps=24, pair=GAUSS, trace_every=2)
        result = e.submit(w).future.result(timeout=60)
    finally:
        e.stop()
    assert result.traces is not None
    manifest = SimpleNamespace(output=SimpleNamespace(shape=[1], range=None))
    model = SimpleNamespace(id="gauss@1", calibrated=True, manifest=manifest)
    prep = SimpleNamespace(work=w, model=model, sampler="mh", output="array", diagnostics="traces", exact=True)
    with RecordOps() as rec:
        body = response_body(prep, result, 0.1)  # type: ignore[arg-type]
        data = npz_body(prep, result, 0.1)  # type: ignore[arg-type]
    assert rec.ops == [], rec.ops
    d = body["diagnostics"]
    assert len(d["traces"]["logit"]) == 6 and set(d["ess"]) == {"logit", "energy", "z_norm"}
    assert len(body["samples"]) == 6 and np.load(io.BytesIO(data))["samples"].shape == (6, 1)
