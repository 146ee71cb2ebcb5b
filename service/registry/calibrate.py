"""Calibrating a model version in place (docs/algorithms.md §2), for ``gansampler-server calibrate`` and the admin API.

Raw logits on the version's held-out REAL samples and on as many fresh fakes (latents from ``seed``) are split
into fixed disjoint halves; the calibration is fitted on one half and scored on the other. The result is written
back into ``model.toml`` as ``[calibration]`` (map + quality figures), together with ``[samplers.drs] logit_max``:
the largest calibrated logit over a deterministic pilot of ``pilot`` fakes. The new manifest is validated before
it replaces the old one (atomically); only those lines change, so a hand-written file keeps its comments and layout
(:mod:`service.registry.toml_edit`).
"""

from __future__ import annotations

import os
import stat
import tempfile
import tomllib
from pathlib import Path
from typing import Any, NamedTuple

import tomli_w
import torch
from torch import Tensor

from service.registry.errors import ManifestError, ModelNotFoundError
from service.registry.model import LoadedModel, batched_logits, load_version
from service.registry.registry import parse_ref, scan_root
from service.registry.schema import MANIFEST_NAME, parse_manifest
from service.registry.toml_edit import TomlEditError, replace_table, set_value
from service.samplers.calibration import DEFAULT_METHOD, Calibration, CalibrationReport, fit_and_evaluate

DEFAULT_SEED = 0
DEFAULT_PILOT = 10_000
PILOT_SEED_OFFSET = 1_000_003  # pilot latents never coincide with the calibration fakes
GENERATE_BATCH = 256
BACKUP_SUFFIX = ".bak"  # model.toml.bak: the original of a manifest that had to be rewritten whole


class CalibrationResult(NamedTuple):
    """What :func:`calibrate_version` fitted and wrote. ``n_real``/``n_fake``: logits used (both halves)."""

    model_id: str
    manifest_path: Path
    calibration: Calibration
    report: CalibrationReport
    logit_max: float
    n_real: int
    n_fake: int
    write_note: str | None = None  # set when model.toml was rewritten whole (see write_calibration)


def fake_logits(model: LoadedModel, n: int, seed: int, calibrated: bool) -> Tensor:
    """Logits (n,) of G(z), z ~ N(0, I) drawn from a CPU torch.Generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    fn = model.pair.logit if calibrated else model.raw_logit
    out = []
    with torch.no_grad():
        for start in range(0, n, GENERATE_BATCH):
            b = min(GENERATE_BATCH, n - start)
            z = torch.randn((b, *model.pair.latent_shape), generator=gen).to(model.device)
            out.append(fn(model.pair.generator(z)).reshape(-1).double().cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


def resolve_version_dir(root: Path, ref: str) -> Path:
    """``<root>/<name>/<version>`` for ``"name@version"``, or the highest version for ``"name"``."""
    name, version = parse_ref(ref)
    model_dir = root / name
    versions = (
        sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
        if model_dir.is_dir()
        else []
    )
    if not versions:
        hints = [item.reason for item in scan_root(root)[1] if item.path.parent == model_dir]
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise ModelNotFoundError(ref, f"no versions of {name!r} under {root}{hint}")
    if version is None:
        version = versions[-1]
    if version not in versions:
        raise ModelNotFoundError(ref, f"model {name!r} has no version {version} (has {versions})")
    return model_dir / str(version)


def _edited(text: str, calibration: dict[str, Any], logit_max: float) -> str:
    """``text`` with ``[calibration]`` and ``[samplers.drs] logit_max`` changed in place, all else kept."""
    text = replace_table(text, ("calibration",), calibration)
    return set_value(text, ("samplers", "drs"), "logit_max", logit_max)


def write_calibration(
    manifest_path: Path, calibration: Calibration, report: CalibrationReport, logit_max: float
) -> str | None:
    """Replace ``[calibration]`` and set ``[samplers.drs] logit_max`` in ``manifest_path``; returns None, or a note
    when the file had to be rewritten whole.

    Only those lines change: comments, order and formatting of everything else are kept byte for byte. The edited
    text is parsed again and must equal the intended data. When the file writes these tables in a form that is not
    edited in place (an inline table, dotted keys), it is rewritten as plain TOML, and the original is kept next to
    it as ``model.toml.bak``. The new manifest is validated first and replaces the old one atomically, with its mode.
    """
    raw = manifest_path.read_bytes()
    text = raw.decode("utf-8")
    data: dict[str, Any] = tomllib.loads(text)
    data["calibration"] = {**calibration.to_dict(), **report.to_dict()}
    data.setdefault("samplers", {}).setdefault("drs", {})["logit_max"] = float(logit_max)
    parse_manifest(data, manifest_path)  # never write a manifest the registry would refuse
    note = None
    try:
        new_text = _edited(text, data["calibration"], float(logit_max))
        if tomllib.loads(new_text) != data:
            raise TomlEditError("the edited file does not parse to the intended data")
    except (TomlEditError, tomllib.TOMLDecodeError) as exc:
        backup = manifest_path.with_name(manifest_path.name + BACKUP_SUFFIX)
        _write_atomic(backup, raw, manifest_path)
        new_text = tomli_w.dumps(data)
        note = (
            f"rewrote {manifest_path.name} as plain TOML (comments and layout not kept: {exc}); "
            f"the original is in {backup.name}"
        )
    _write_atomic(manifest_path, new_text.encode("utf-8"), manifest_path)
    return note


def _write_atomic(path: Path, data: bytes, mode_of: Path) -> None:
    """Write ``data`` to ``path`` through a temporary file in its directory (never a half-written file), with the
    permission bits of ``mode_of``."""
    mode = stat.S_IMODE(mode_of.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def calibrate_version(
    version_dir: Path,
    method: str = DEFAULT_METHOD,
    fakes: int | None = None,
    seed: int = DEFAULT_SEED,
    pilot: int = DEFAULT_PILOT,
    device: str = "cpu",
    write: bool = True,
) -> CalibrationResult:
    """Fit and score a calibration of ``version_dir`` and (when ``write``) store it in its model.toml.

    fakes: number of fresh fakes (default: as many as holdout samples). pilot: fakes for DRS's logit_max.
    """
    model = load_version(version_dir, device, require_calibration=False)
    path = version_dir / MANIFEST_NAME
    if model.pair.real is None:
        raise ManifestError(path, "data.holdout", "calibration needs held-out real samples: add [data] holdout")
    real = batched_logits(model.raw_logit, model.pair.real).double().cpu()
    n_fake = real.numel() if fakes is None else fakes
    if n_fake < 2:
        raise ManifestError(path, "data.holdout", f"calibration needs at least 2 fakes, got --fakes {n_fake}")
    fake = fake_logits(model, n_fake, seed, calibrated=False)
    finite = torch.isfinite(real).all() and torch.isfinite(fake).all()
    if not finite:
        raise ManifestError(path, "discriminator.file", "D returned non-finite logits on the holdout or on fakes")
    cal, report = fit_and_evaluate(real, fake, method, seed=seed)
    pilot_raw = fake_logits(model, pilot, seed + PILOT_SEED_OFFSET, calibrated=False)
    logit_max = float(cal.apply(pilot_raw).max()) if pilot_raw.numel() else float(cal.apply(fake).max())
    note = write_calibration(path, cal, report, logit_max) if write else None
    return CalibrationResult(model.id, path, cal, report, logit_max, real.numel(), n_fake, note)
