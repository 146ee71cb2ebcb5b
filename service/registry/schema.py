"""``model.toml``: the manifest of one model version, validated with pydantic v2 (user reference:
docs/bring-your-own-model.md).

Unknown fields are refused everywhere. :func:`read_manifest` turns every problem into a :class:`ManifestError`
that names the file and the dotted field, e.g. ``models/x/1/model.toml: generator.sha256: expected 64 hex chars,
got 'abc'``.

```toml
name = "digits-dcgan"          # must equal the model directory's name
version = 1                    # must equal the version directory's name
description = "..."
[latent]        shape = [64, 1, 1]
[output]        kind = "image"; shape = [1, 16, 16]; range = [-1.0, 1.0]
[generator]     format = "safetensors"; file = "generator.safetensors"; arch = "pkg.mod:Class"; kwargs = {...}; sha256 = "..."
[discriminator] (same) + output = "logit" | "probability" | "critic"
[data]          holdout = "holdout.safetensors"; holdout_sha256 = "..."      # optional table
[calibration]   method = "platt"; a = ...; b = ...; auc = ...; dawid_z = ...   # written by `calibrate`
[samplers.rep]  steps = 640; step_size = 0.01                                    # per-model defaults
[samplers.drs]  logit_max = 3.2                                                   # written by `calibrate`
[runtime]       memory_format = "auto"; compile = false; forward = "torch"; precision = "float32"; threads = 1  # optional
```
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

from service.registry.errors import ManifestError

MANIFEST_NAME = "model.toml"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
FORMATS = ("safetensors", "state_dict", "torch_export", "onnx")
ARCH_FORMATS = ("safetensors", "state_dict")
KNOWN_SAMPLERS = ("raw", "mh", "rep", "ddls", "drs", "sir")
MemoryFormat = Literal["auto", "contiguous", "channels_last"]
DEFAULT_MEMORY_FORMAT: MemoryFormat = "auto"
DEFAULT_COMPILE = False
Forward = Literal["torch", "onnxruntime"]
DEFAULT_FORWARD: Forward = "torch"
Precision = Literal["float32", "bfloat16"]
DEFAULT_PRECISION: Precision = "float32"
MAX_RUNTIME_THREADS = 1024
"""Most CPU threads ``[runtime] threads`` may ask for."""

Format = Literal["safetensors", "state_dict", "torch_export", "onnx"]
DOutput = Literal["logit", "probability", "critic"]
Dim = Annotated[int, Field(ge=1, le=1 << 16)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _check_sha(v: str | None) -> str | None:
    """64 hex digits, either case (PowerShell's Get-FileHash prints upper case); stored lower case."""
    if v is None:
        return None
    if not SHA256_RE.match(v.lower()):
        raise ValueError(f"expected 64 hex chars, got {v!r}")
    return v.lower()


def _check_relative_file(v: str) -> str:
    p = Path(v)
    if not v or p.is_absolute() or ".." in p.parts or v.startswith(("/", "\\")):
        raise ValueError(f"must be a path relative to the version directory without '..', got {v!r}")
    return v


class LatentSpec(_Strict):
    """The prior N(0, I) on latents of ``shape`` (what G takes, without the batch dimension)."""

    shape: tuple[Dim, ...] = Field(min_length=1, max_length=4)


class OutputSpec(_Strict):
    """What G returns per sample and how it maps to an image: ``range`` = (value of black, value of white);
    required for images, optional (unbounded) for vectors."""

    kind: Literal["image", "vector"]
    shape: tuple[Dim, ...] = Field(min_length=1, max_length=4)
    range: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _check(self) -> OutputSpec:
        if self.range is None:
            if self.kind == "image":
                raise ValueError("@range: an image output needs range = [low, high]")
            return self
        lo, hi = self.range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"@range: must be two finite numbers [low, high] with low < high, got {list(self.range)}")
        if self.kind == "image" and (len(self.shape) != 3 or self.shape[0] not in (1, 3, 4)):
            raise ValueError(f"@shape: an image's shape must be [C, H, W] with C in 1, 3, 4, got {list(self.shape)}")
        return self


class NetworkSpec(_Strict):
    """One network's weights: format, file (relative to the version directory), its sha256, and for
    ``safetensors``/``state_dict`` the import path ``package.module:Class`` and constructor kwargs."""

    format: Format
    file: str
    sha256: str
    arch: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)

    _sha = field_validator("sha256")(_check_sha)
    _file = field_validator("file")(_check_relative_file)

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", v):
            raise ValueError(f"expected an import path 'package.module:Class', got {v!r}")
        return v

    @model_validator(mode="after")
    def _arch_for_format(self) -> NetworkSpec:
        if self.format in ARCH_FORMATS and self.arch is None:
            raise ValueError(f"@arch: format {self.format!r} needs arch = 'package.module:Class'")
        if self.format not in ARCH_FORMATS and (self.arch is not None or self.kwargs):
            raise ValueError(f"@arch: format {self.format!r} carries its own graph: remove arch and kwargs")
        return self


class DiscriminatorSpec(NetworkSpec):
    """``output``: what D returns. ``logit``; ``probability`` (a final nn.Sigmoid is stripped, otherwise the
    probability is turned into a clamped logit); ``critic`` (WGAN / LS-GAN: served only with a [calibration])."""

    output: DOutput = "logit"


class DataSpec(_Strict):
    """Held-out REAL samples (tensor key ``x``, (N, *output.shape), in the output range), never trained on."""

    holdout: str | None = None
    holdout_sha256: str | None = None

    _sha = field_validator("holdout_sha256")(_check_sha)

    @field_validator("holdout")
    @classmethod
    def _file(cls, v: str | None) -> str | None:
        return None if v is None else _check_relative_file(v)


class CalibrationSpec(_Strict):
    """A fitted calibration (see :mod:`service.samplers.calibration`) and its held-out quality figures."""

    method: Literal["platt", "isotonic", "identity"] = "platt"
    a: float | None = None
    b: float | None = None
    x: list[float] | None = None
    y: list[float] | None = None
    auc: float | None = None
    dawid_z: float | None = None
    ece: float | None = None
    brier: float | None = None
    n: int | None = None

    @model_validator(mode="after")
    def _check(self) -> CalibrationSpec:
        from service.samplers.calibration import Calibration

        try:
            Calibration.from_dict(self.as_dict())
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("calibration: ")) from None
        return self

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class RuntimeSpec(_Strict):
    """How the networks run (:mod:`service.registry.runtime`, :mod:`service.registry.runtime_backends`).

    memory_format: ``auto`` (default: channels_last for an image model with conv weights in an arch-backed G or D
                   whose channels_last logits match contiguous on the probe latents, decided by structure, never by
                   a timing; contiguous for everything else), ``contiguous``, or ``channels_last`` (arch-backed torch
                   modules only; no-op with a note for torch_export / onnx). Results equal within float tolerance.
    compile:       torch.compile G and D at load (inductor, dynamic batch); eager with a note when it fails.
    forward:       ``torch`` (default) or ``onnxruntime``: forward-only calls of the torch networks on onnxruntime
                   (CPU), gradient calls on torch; torch with a note when export or the check fails. Results differ
                   from torch by float rounding (~1e-6).
    precision:     ``float32`` (default) or ``bfloat16``: bf16 autocast on the torch networks, float32 outputs.
                   Changes logits well beyond float rounding (recorded at load, not checked against a tolerance).
    threads:       CPU threads torch uses while the engine steps this model's pools (and onnxruntime's threads with
                   ``forward = "onnxruntime"``); unset: the process's setting (``serve --torch-threads``). Small
                   networks run faster on one thread (:mod:`service.registry.runtime`).

    At most one of compile, forward and precision may differ from its default (each replaces how the same torch
    networks run); forward / precision need at least one torch network (``format`` other than ``onnx``).
    """

    memory_format: MemoryFormat = DEFAULT_MEMORY_FORMAT
    compile: StrictBool = DEFAULT_COMPILE
    forward: Forward = DEFAULT_FORWARD
    precision: Precision = DEFAULT_PRECISION
    threads: Annotated[int, Field(strict=True, ge=1, le=MAX_RUNTIME_THREADS)] | None = None


SamplerDefaults = dict[str, Any]  # values checked by Manifest._samplers: finite int | float


class Manifest(_Strict):
    """One model version. See the module docstring for the TOML layout."""

    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(ge=0)
    description: str = ""
    latent: LatentSpec
    output: OutputSpec
    generator: NetworkSpec
    discriminator: DiscriminatorSpec
    data: DataSpec = Field(default_factory=DataSpec)
    calibration: CalibrationSpec | None = None
    samplers: dict[str, SamplerDefaults] = Field(default_factory=dict)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)

    @field_validator("samplers")
    @classmethod
    def _samplers(cls, v: dict[str, SamplerDefaults]) -> dict[str, SamplerDefaults]:
        for name, table in v.items():
            if name not in KNOWN_SAMPLERS:
                raise ValueError(f"@{name}: unknown sampler, expected one of {list(KNOWN_SAMPLERS)}")
            for key, value in table.items():
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise ValueError(f"@{name}.{key}: must be a finite number, got {value!r}")
            steps = table.get("steps")
            if steps is not None and (not isinstance(steps, int) or steps < 0):
                raise ValueError(f"@{name}.steps: must be a non-negative integer, got {steps!r}")
        return v

    @model_validator(mode="after")
    def _runtime(self) -> Manifest:
        rt = self.runtime
        onnx = [role for role in ("generator", "discriminator") if getattr(self, role).format == "onnx"]
        if rt.compile and onnx:
            raise ValueError(
                f"@runtime.compile: true needs torch networks, but {' and '.join(onnx)}.format is 'onnx' "
                "(onnxruntime runs its own graph): set compile = false or ship torch_export / safetensors"
            )
        changed = [
            label
            for label, on in (
                ("compile = true", rt.compile),
                (f"forward = {rt.forward!r}", rt.forward != DEFAULT_FORWARD),
                (f"precision = {rt.precision!r}", rt.precision != DEFAULT_PRECISION),
            )
            if on
        ]
        if len(changed) > 1:
            field = "forward" if rt.forward != DEFAULT_FORWARD else "precision"
            raise ValueError(
                f"@runtime.{field}: {' and '.join(changed)} exclude each other (each replaces how the torch networks "
                f"run); keep one of them, the others at their defaults (compile = false, forward = "
                f"{DEFAULT_FORWARD!r}, precision = {DEFAULT_PRECISION!r})"
            )
        if len(onnx) == 2:
            for field, value, default in (("forward", rt.forward, DEFAULT_FORWARD),
                                          ("precision", rt.precision, DEFAULT_PRECISION)):
                if value != default:
                    raise ValueError(
                        f"@runtime.{field}: {value!r} acts on torch networks, but generator.format and "
                        f"discriminator.format are 'onnx' (onnxruntime, float32, already): set {field} = {default!r}"
                    )
        return self

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


def _located(err: Any) -> tuple[str, str]:
    """(dotted field, message); a validator message ``@sub.field: text`` extends the field by ``sub.field``."""
    field = ".".join(str(p) for p in err["loc"])
    msg = _message(err)
    if msg.startswith("@") and ": " in msg:
        sub, msg = msg[1:].split(": ", 1)
        field = f"{field}.{sub}" if field else sub
    return field or "<manifest>", msg


def _message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if err["type"] in ("missing", "extra_forbidden"):
        return {"missing": "required field is missing", "extra_forbidden": "unknown field"}[err["type"]]
    if "input" in err and err["type"] not in ("value_error",) and not isinstance(err["input"], dict):
        msg = f"{msg}, got {err['input']!r}"
    return msg


def parse_manifest(data: dict[str, Any], path: Path | str) -> Manifest:
    """Validate a manifest dict; errors name ``path`` and each dotted field."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        errs = [_located(e) for e in exc.errors()]
        raise ManifestError(path, errs[0][0], errs[0][1], errs[1:]) from None


def read_manifest(path: Path, expect_name: str | None = None, expect_version: int | None = None) -> Manifest:
    """Read and validate ``path`` (a model.toml); name/version must match the directories when given."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(path, "<file>", "manifest not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(path, "<toml>", f"not valid TOML: {exc}") from None
    m = parse_manifest(data, path)
    if expect_name is not None and m.name != expect_name:
        raise ManifestError(path, "name", f"{m.name!r} does not match its directory {expect_name!r}")
    if expect_version is not None and m.version != expect_version:
        raise ManifestError(path, "version", f"{m.version} does not match its directory '{expect_version}'")
    return m
