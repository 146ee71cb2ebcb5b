"""SampleBatch decoding: PNG → PIL / numpy, arrays → numpy, save() layout, grid; parsing of the docs' examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gansampler import SampleBatch, make_grid
from gansampler._decode import GRID_PADDING_PX, sample_file_name
from PIL import Image

from .conftest import sample_body


def test_png_batch_images_and_arrays() -> None:
    batch = SampleBatch.model_validate(sample_body(3))
    images = batch.images
    assert [im.size for im in images] == [(4, 4)] * 3 and images[0].mode == "L"
    arrays = batch.arrays
    assert arrays.shape == (3, 4, 4) and arrays.dtype == np.uint8
    assert arrays[:, 0, 0].tolist() == [0, 40, 80]
    assert batch.png_bytes[0].startswith(b"\x89PNG")
    assert batch.diagnostics is not None and batch.diagnostics.acceptance_rate == 0.41
    assert batch.timing.total_s == 0.83 and batch.seed == 7


def test_array_batch() -> None:
    batch = SampleBatch.model_validate(sample_body(3, output="array", shape=(2,)))
    assert batch.arrays.dtype == np.float32
    np.testing.assert_array_equal(batch.arrays, [[0, 0.5], [1, 1.5], [2, 2.5]])
    with pytest.raises(ValueError, match=r"images needs output='png'.*output='array'"):
        _ = batch.images


def test_array_shape_mismatch_names_shapes() -> None:
    body = sample_body(2, output="array", shape=(2,))
    body["shape"] = [3]
    with pytest.raises(ValueError, match=r"samples have shape \(2, 2\), expected .* \(2, 3\)"):
        _ = SampleBatch.model_validate(body).arrays


def test_save_png_batch(tmp_path: Path) -> None:
    batch = SampleBatch.model_validate(sample_body(5))
    written = batch.save(tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["diagnostics.json", "grid.png", *[f"sample_000{i}.png" for i in range(5)]]
    assert Image.open(tmp_path / "out" / "sample_0002.png").getpixel((0, 0)) == 80
    grid = Image.open(tmp_path / "out" / "grid.png")
    assert grid.size == (3 * (4 + GRID_PADDING_PX) + GRID_PADDING_PX, 2 * (4 + GRID_PADDING_PX) + GRID_PADDING_PX)
    meta = json.loads((tmp_path / "out" / "diagnostics.json").read_text())
    assert meta["seed"] == 7 and meta["diagnostics"]["acceptance_rate"] == 0.41 and "samples" not in meta


def test_save_vector_batch(tmp_path: Path) -> None:
    batch = SampleBatch.model_validate(sample_body(4, output="array", shape=(2,)))
    written = batch.save(tmp_path)
    assert sorted(p.name for p in written) == ["diagnostics.json", "samples.npy"]
    assert np.load(tmp_path / "samples.npy").shape == (4, 2)


def test_grid_places_images_row_major() -> None:
    images = [Image.new("L", (2, 2), color=v) for v in (10, 20, 30)]
    grid = make_grid(images, columns=2)
    p = GRID_PADDING_PX
    assert grid.getpixel((p, p)) == 10
    assert grid.getpixel((p + 2 + p, p)) == 20
    assert grid.getpixel((p, p + 2 + p)) == 30
    with pytest.raises(ValueError, match="at least one image"):
        make_grid([])


def test_sample_file_names_sort() -> None:
    assert sample_file_name(7, 10) == "sample_0007.png"
    assert sample_file_name(3, 123456) == "sample_000003.png"


def test_docs_examples_parse_with_extra_fields() -> None:
    body = sample_body(1)
    body["diagnostics"].update(
        {
            "sampler": {"ess": 120.4, "max_weight": 0.03},
            "chains": [
                {
                    "chain": 0,
                    "accepted": 260,
                    "acceptance_rate": 0.41,
                    "logit_initial": -0.9,
                    "logit_final": 0.2,
                    "restarted": False,
                    "nonfinite": 0,
                    "distinct_states": 261,
                }
            ],
            "acceptance_curve": [0.5, 0.44],
            "traces": {"every": 10, "logit": [[0.1]], "energy": [[1.0]], "z_norm": [[2.0]]},
            "ess": {"logit": 35.2, "energy": 30.1},
            "rhat": {"logit": 1.01, "energy": 1.02},
            "future_field": 1,
        }
    )
    d = SampleBatch.model_validate(body).diagnostics
    assert d is not None and d.chains is not None and d.chains[0].distinct_states == 261
    assert d.traces is not None and d.traces.every == 10 and d.rhat == {"logit": 1.01, "energy": 1.02}
    assert d.sampler["ess"] == 120.4
