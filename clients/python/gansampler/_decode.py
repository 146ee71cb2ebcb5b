"""Decoding and saving samples: base64 PNG → bytes / PIL image, nested lists → numpy, ``.npz`` bodies, grids.

numpy and Pillow are optional extras (``pip install 'gansampler[images]'``); they are imported lazily here and a
:class:`~gansampler.MissingDependencyError` names the one that is missing.
"""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exceptions import MissingDependencyError

if TYPE_CHECKING:
    import numpy
    from PIL.Image import Image

    from ._models import SampleBatch

#: Pixels of background between grid cells and around the grid.
GRID_PADDING_PX = 2
#: Digits in ``sample_0000.png`` (more when n needs them).
SAMPLE_NAME_DIGITS = 4


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependencyError("numpy", "decoding samples to arrays") from exc
    return numpy


def _pil_image() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependencyError("Pillow", "decoding PNG samples to images") from exc
    return Image


def b64_to_bytes(sample: str) -> bytes:
    """One ``samples[i]`` of a PNG batch → the PNG file's bytes."""
    return base64.b64decode(sample, validate=True)


def png_to_image(sample: str) -> Image:
    """One base64 PNG sample → a loaded PIL image (mode ``L`` for one channel, ``RGB`` for three)."""
    image = _pil_image().open(io.BytesIO(b64_to_bytes(sample)))
    image.load()
    return image


def lists_to_array(samples: list[Any], shape: list[int]) -> numpy.ndarray:
    """n nested lists, each of ``shape`` → float32 array ``(n, *shape)``; raises ValueError on a mismatch."""
    np = _numpy()
    array = np.asarray(samples, dtype=np.float32)
    expected = (len(samples), *shape)
    if array.shape != expected:
        raise ValueError(f"samples have shape {array.shape}, expected (n, *shape) = {expected}")
    return array


def stack_images(images: list[Image]) -> numpy.ndarray:
    """PIL images of one size → uint8 ``(n, H, W)`` (one channel) or ``(n, H, W, C)``."""
    np = _numpy()
    if not images:
        return np.zeros((0,), dtype=np.uint8)
    return np.stack([np.asarray(image) for image in images])


def make_grid(images: list[Image], columns: int | None = None) -> Image:
    """Tile same-size images row-major into one image with ``columns`` (default ⌈√n⌉) per row."""
    if not images:
        raise ValueError("make_grid needs at least one image, got 0")
    pil = _pil_image()
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    mode = images[0].mode
    pad = GRID_PADDING_PX
    grid = pil.new(mode, (columns * (width + pad) + pad, rows * (height + pad) + pad))
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid.paste(image.convert(mode), (pad + column * (width + pad), pad + row * (height + pad)))
    return grid


def sample_file_name(index: int, n: int, suffix: str = ".png") -> str:
    """``sample_0007.png``: zero-padded so that the files sort in sample order."""
    digits = max(SAMPLE_NAME_DIGITS, len(str(max(n - 1, 0))))
    return f"sample_{index:0{digits}d}{suffix}"


def batch_metadata(batch: SampleBatch) -> dict[str, Any]:
    """Everything of a batch except the samples, JSON-ready (what ``diagnostics.json`` holds)."""
    return batch.model_dump(mode="json", exclude={"samples"}, exclude_none=True)


def save_batch(batch: SampleBatch, directory: Path, *, grid: bool = True) -> list[Path]:
    """Write a batch into ``directory`` (created); returns the paths written.

    PNG output: ``sample_0000.png`` … plus ``grid.png`` (needs Pillow; skipped without it). Array output:
    ``samples.npy`` float32 ``(n, *shape)`` (needs numpy). Always ``diagnostics.json`` (metadata, diagnostics,
    timing).
    """
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if batch.output == "png":
        for index, data in enumerate(batch.png_bytes):
            path = directory / sample_file_name(index, batch.n)
            path.write_bytes(data)
            written.append(path)
        if grid and batch.samples:
            try:
                grid_image = make_grid(batch.images)
            except MissingDependencyError:
                grid_image = None
            if grid_image is not None:
                grid_image.save(directory / "grid.png")
                written.append(directory / "grid.png")
    else:
        path = directory / "samples.npy"
        _numpy().save(path, batch.arrays)
        written.append(path)
    path = directory / "diagnostics.json"
    path.write_text(json.dumps(batch_metadata(batch), indent=2) + "\n")
    written.append(path)
    return written


@dataclass(frozen=True)
class NpzBatch:
    """A sampling response fetched as ``application/x-npz`` (``client.samples.create_npz``).

    ``samples``: float32 ``(n, *shape)`` in the model's output range; ``z``: ``(n, *latent_shape)``;
    ``logit_final``: ``(n,)``; ``meta``: everything else of the JSON response (model, seed, diagnostics, timing);
    ``raw``: the ``.npz`` file's bytes (``save`` writes them unchanged).
    """

    samples: numpy.ndarray
    z: numpy.ndarray | None
    logit_final: numpy.ndarray | None
    meta: dict[str, Any]
    raw: bytes = field(repr=False)

    @property
    def seed(self) -> int | None:
        """The seed the server used (from ``meta``)."""
        seed = self.meta.get("seed")
        return int(seed) if seed is not None else None

    def save(self, path: str | Path) -> Path:
        """Write the ``.npz`` file as received; returns its path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.raw)
        return target


def parse_npz(data: bytes) -> NpzBatch:
    """An ``application/x-npz`` body → :class:`NpzBatch`; raises ValueError when ``samples`` is missing."""
    np = _numpy()
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        names = set(archive.files)
        if "samples" not in names:
            raise ValueError(f"npz body has no 'samples' array, only {sorted(names)}")
        meta: dict[str, Any] = {}
        if "meta.json" in names:
            meta = json.loads(archive["meta.json"].tobytes().decode("utf-8"))
        elif "meta" in names:
            meta = json.loads(archive["meta"].tobytes().decode("utf-8"))
        return NpzBatch(
            samples=archive["samples"],
            z=archive["z"] if "z" in names else None,
            logit_final=archive["logit_final"] if "logit_final" in names else None,
            meta=meta,
            raw=data,
        )
