"""One loaded model version: its manifest, networks on a device, calibration, holdout, and what it can run.

:func:`load_version` does the whole load: manifest → verified files → networks (eval, frozen) → probe batch (shape
checks) → raw logit head → calibration → ``[runtime]`` (memory format, torch.compile) → holdout with its calibrated
logits. Every failure is a :class:`~service.registry.errors.RegistryError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from service.config import DEFAULT_MAX_JOB_STEPS, DEFAULT_MAX_STEPS
from service.registry.errors import ManifestError
from service.registry.files import verified_file
from service.registry.heads import batch_size_error, fixed_batch_error, logit_head
from service.registry.load_notes import range_notes, steps_notes, zero_gradient_notes
from service.registry.loaders import Network, arch_changed_on_disk, load_network
from service.registry.runtime import apply_runtime
from service.registry.schema import MANIFEST_NAME, Manifest, read_manifest
from service.samplers.base import GanPair
from service.samplers.calibration import IDENTITY, Calibration

log = logging.getLogger(__name__)

PROBE_BATCH = 4
ROW_ATOL = 1e-3
"""How far a row's value may move with the batch size, relative to max(1, its magnitude): kernels for different
batch sizes round differently (measured: up to 4.5e-5 in a logit of the demo MLP), batch statistics move it by far
more."""
PROBE_SEED = 0
LOGIT_BATCH = 256
HOLDOUT_KEY = "x"
HOLDOUT_RANGE_SLACK = 1e-3  # fraction of the output range a holdout value may lie outside it
GRAD_SAMPLERS = frozenset({"rep", "ddls"})  # used when service.samplers.SAMPLERS is not available


@dataclass(frozen=True)
class LoadedModel:
    """A ready model version.

    pair:        GanPair(G, calibrated logit d~, latent_shape, differentiable, real=holdout, real_logit=d~(holdout)).
    raw_logit:   x (B, *output_shape) -> uncalibrated D logit (B,) (what calibration is fitted on).
    calibration: the map raw -> calibrated logit (identity when the manifest has none).
    notes:       how the model was adapted (e.g. "final sigmoid of the discriminator removed", the memory format
                 chosen and its measured times, torch.compile).
    runtime:     the ``[runtime]`` settings in effect and what load measured (JSON-ready, see registry.runtime):
                 ``memory_format``, ``memory_format_setting``, ``compile``, ``compile_setting``, ``layout_ms``...
    backends:    {"generator": "torch" | "torch_export" | "onnxruntime", "discriminator": ...}.
    networks:    the loaded G and D (``Network.module`` is the nn.Module, None for ONNX).
    """

    id: str
    manifest: Manifest
    manifest_path: Path
    pair: GanPair
    raw_logit: Callable[[Tensor], Tensor]
    calibration: Calibration
    device: str
    memory_bytes: int
    load_seconds: float
    backends: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    networks: dict[str, Network] = field(default_factory=dict, repr=False)
    no_grad_reason: str | None = None  # why ∇z is unavailable when the backends would support it
    runtime: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def calibrated(self) -> bool:
        return not self.calibration.is_identity

    def sampler_defaults(self, name: str) -> dict[str, float | int]:
        """The manifest's ``[samplers.<name>]`` table (``steps``, numeric params, DRS ``logit_max``); {} if none."""
        return dict(self.manifest.samplers.get(name, {}))

    def supports(self, sampler_name: str) -> tuple[bool, str | None]:
        """(True, None) or (False, why): forward-only models cannot run samplers that need ∇_z."""
        needs_grad = _needs_grad(sampler_name)
        if needs_grad is None:
            return False, f"unknown sampler {sampler_name!r}"
        if needs_grad and not self.pair.differentiable:
            if self.no_grad_reason is not None:
                return False, (
                    f"{self.id} has no gradients: {self.no_grad_reason}; {sampler_name} needs ∇z of D(G(z)): "
                    "use raw, mh, drs or sir, or keep the forward pass in torch autograd"
                )
            return False, (
                f"{self.id} is served by {self.backends.get('generator', 'a forward-only backend')} without gradients; "
                f"{sampler_name} needs ∇z of D(G(z)): use raw, mh, drs or sir, or ship the model as torch_export"
            )
        return True, None


def _needs_grad(sampler_name: str) -> bool | None:
    """Whether a sampler needs ∇z (from SAMPLERS when it lists the name); None for an unknown sampler."""
    from service.registry.schema import KNOWN_SAMPLERS

    try:
        from service.samplers import SAMPLERS
    except ImportError:
        SAMPLERS = {}
    entry = SAMPLERS.get(sampler_name)
    if entry is not None:
        return bool(entry.cls.needs_grad)
    return (sampler_name in GRAD_SAMPLERS) if sampler_name in KNOWN_SAMPLERS else None


def _check_sampler_defaults(m: Manifest, path: Path) -> None:
    """``[samplers.<name>]`` keys must be ``steps``, a param of that sampler, or a numeric option, within bounds."""
    try:
        from service.samplers import SAMPLERS
    except ImportError:
        return
    from service.samplers.base import SamplerError

    for name, table in m.samplers.items():
        entry = SAMPLERS.get(name)
        if entry is None:
            continue  # not in this build: checked when it is
        specs = {spec.name: spec.check for spec in entry.cls.param_specs}
        for f in dataclasses.fields(entry.options_cls):
            constraint = f.metadata.get("option")
            if constraint is not None and hasattr(constraint, "low"):  # numeric options only
                specs[f.name] = partial(constraint.check, f.name)
        for key, value in table.items():
            if key == "steps":
                continue
            check = specs.get(key)
            if check is None:
                expected = ["steps", *sorted(specs)]
                raise ManifestError(
                    path, f"samplers.{name}.{key}", f"unknown parameter of {name}, expected one of {expected}"
                )
            try:
                check(value)
            except SamplerError as exc:
                raise ManifestError(path, f"samplers.{name}.{key}", str(exc)) from None


def batched_logits(fn: Callable[[Tensor], Tensor], x: Tensor, batch: int = LOGIT_BATCH) -> Tensor:
    """fn over ``x`` (N, ...) in chunks without gradients, concatenated (N,)."""
    with torch.no_grad():
        return torch.cat([fn(x[i : i + batch]).reshape(-1) for i in range(0, x.shape[0], batch)])


def _load_holdout(m: Manifest, version_dir: Path, path: Path, device: str) -> Tensor | None:
    if m.data.holdout is None:
        return None
    f = verified_file(version_dir, m.data.holdout, m.data.holdout_sha256, path, "data.holdout", "data.holdout_sha256")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(f), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ManifestError(path, "data.holdout", f"cannot read {m.data.holdout!r}: {exc}") from None
    if HOLDOUT_KEY not in tensors:
        raise ManifestError(
            path, "data.holdout", f"{m.data.holdout!r} has no tensor {HOLDOUT_KEY!r} (has {sorted(tensors)})"
        )
    x = tensors[HOLDOUT_KEY].to(torch.float32)
    if x.dim() < 1 or tuple(x.shape[1:]) != m.output.shape or x.shape[0] < 2:
        raise ManifestError(
            path,
            "data.holdout",
            f"expected shape (N >= 2, {', '.join(map(str, m.output.shape))}), got {tuple(x.shape)}",
        )
    if not bool(torch.isfinite(x).all()):
        raise ManifestError(path, "data.holdout", "holdout holds non-finite values")
    if m.output.range is not None:
        lo, hi = m.output.range
        slack = HOLDOUT_RANGE_SLACK * (hi - lo)
        if float(x.min()) < lo - slack or float(x.max()) > hi + slack:
            raise ManifestError(
                path,
                "data.holdout",
                f"values span [{float(x.min()):.4g}, {float(x.max()):.4g}], outside output.range {[lo, hi]}",
            )
    return x.to(device)


def _calibration(m: Manifest, path: Path, require: bool) -> Calibration:
    if m.calibration is None:
        if m.discriminator.output == "critic" and require:
            raise ManifestError(
                path,
                "calibration",
                "discriminator.output = 'critic' needs a [calibration]: run gansampler-server calibrate",
            )
        return IDENTITY
    cal = Calibration.from_dict(m.calibration.as_dict())
    if cal.is_identity and m.discriminator.output == "critic" and require:
        raise ManifestError(path, "calibration.method", "a critic needs 'platt' or 'isotonic', not 'identity'")
    return cal


def probe_latents(m: Manifest, device: str) -> Tensor:
    """The load's ``PROBE_BATCH`` probe latents (PROBE_BATCH, *latent.shape), the same on every load."""
    return torch.randn((PROBE_BATCH, *m.latent.shape), generator=torch.Generator().manual_seed(PROBE_SEED)).to(device)


def _run_g(g: Network, z: Tensor) -> Tensor | Exception:
    try:
        with torch.no_grad():
            return g.fn(z)
    except Exception as exc:  # any failure of the user's network
        return exc


def _probe(m: Manifest, g: Network, device: str, path: Path) -> tuple[Tensor, list[str]]:
    """G's output on ``PROBE_BATCH`` probe latents, checked: shape, finiteness, and that a row does not depend on
    the batch it runs in (row 0 alone against row 0 among the others). Returns (x, notes)."""
    z = probe_latents(m, device)
    x = _run_g(g, z)
    if isinstance(x, Exception):
        fixed = fixed_batch_error("G", "latents", g.fn, z, x)
        if fixed is not None:
            raise ManifestError(path, "generator.file", fixed)
        raise ManifestError(
            path, "latent.shape", f"G failed on a batch of latents of shape {tuple(z.shape)}: {x}"
        ) from None
    if tuple(x.shape) != (PROBE_BATCH, *m.output.shape):
        raise ManifestError(
            path,
            "output.shape",
            f"G returned {tuple(x.shape)} for {PROBE_BATCH} latents, manifest says {list(m.output.shape)}",
        )
    alone = _run_g(g, z[:1])
    if isinstance(alone, Exception) or tuple(alone.shape) != (1, *m.output.shape):
        why = alone if isinstance(alone, Exception) else f"it returned shape {tuple(alone.shape)}"
        raise ManifestError(path, "generator.file", batch_size_error("G", "latents", PROBE_BATCH, 1, why))
    notes: list[str] = []
    finite = torch.isfinite(x.detach().flatten(1)).all(1)
    if not bool(finite.any()):
        raise ManifestError(path, "generator.file", (
            f"G returned non-finite values (NaN or inf) for every one of {PROBE_BATCH} probe latents: "
            "no sample it makes could be served"
        ))
    if not bool(finite.all()):
        notes.append(f"generator: non-finite output for {int((~finite).sum())} of {PROBE_BATCH} probe latents "
                     "(such proposals are rejected and counted as nonfinite)")
    diff = _row_diff(alone[0], x[0])
    if diff is not None:
        raise ManifestError(path, "generator.file", (
            f"G's output for a latent depends on the other latents of its batch: alone and in a batch of "
            f"{PROBE_BATCH} it differs by {diff} (BatchNorm in training mode, or another batch statistic). A sample "
            "must not depend on what it is batched with: save G in eval mode, with per-sample layers only"
        ))
    return x, notes


def _row_diff(a: Tensor, b: Tensor) -> str | None:
    """None when one row's values computed at two batch sizes agree (kernels round differently by batch size:
    ``ROW_ATOL`` leaves room for that, not for a batch statistic), else how they differ."""
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    if not torch.equal(torch.isfinite(a), torch.isfinite(b)):
        return "in which values are finite"
    ok = torch.isfinite(a)
    a, b = a[ok], b[ok]
    if a.numel() == 0:
        return None
    scale = float(torch.maximum(a.abs().max(), b.abs().max()).clamp(min=1.0))
    worst = float((a - b).abs().max())
    return None if worst <= ROW_ATOL * scale else f"{worst:.3g} (largest value {scale:.3g})"


def _check_d_rows(raw_logit: Callable[[Tensor], Tensor], x: Tensor, path: Path) -> None:
    """D scores each sample on its own: its logit for row 0 alone equals its logit in the probe batch."""
    try:
        with torch.no_grad():
            alone, batch = raw_logit(x[:1]), raw_logit(x)
    except Exception as exc:  # any failure of the user's network
        raise ManifestError(path, "discriminator.file", batch_size_error("D", "samples", x.shape[0], 1, exc)) from None
    if bool(torch.isfinite(x[:1]).all()) and not bool(torch.isfinite(batch).any()):
        raise ManifestError(path, "discriminator.file",
                            f"D returned non-finite logits for every one of {x.shape[0]} probe samples of G")
    diff = _row_diff(alone.reshape(-1)[:1], batch.reshape(-1)[:1])
    if diff is not None:
        raise ManifestError(path, "discriminator.file", (
            f"D's logit for a sample depends on the other samples of its batch: alone and in a batch of "
            f"{x.shape[0]} it differs by {diff} (a minibatch standard deviation layer, BatchNorm in training mode, or "
            "another batch statistic). Sampling needs a per-sample density ratio, and a sample must not depend on "
            "what it is batched with: serve a D whose logit for a sample uses that sample alone"
        ))


def _gradient_break(
    m: Manifest, generator: Callable[[Tensor], Tensor], raw_logit: Callable[[Tensor], Tensor], device: str
) -> str | None:
    """Why ∇z of D(G(z)) does not exist although both backends are torch, or None when it flows.

    A forward that leaves autograd (``.detach()``, ``torch.no_grad()`` / ``inference_mode`` inside ``forward``, a
    numpy round trip) would otherwise give gradient samplers a silent zero gradient.
    """
    z = probe_latents(m, device).requires_grad_(True)
    try:
        with torch.enable_grad():
            x = generator(z)
            if not x.requires_grad:
                return "the generator's output is detached from z (.detach(), no_grad or numpy inside forward)"
            if not raw_logit(x).requires_grad:
                return "the discriminator's output is detached from its input (.detach(), no_grad or numpy inside forward)"
    except Exception as exc:  # any failure of the user's network
        return f"the forward pass fails with gradients enabled: {type(exc).__name__}: {exc}"
    return None


def load_version(
    version_dir: Path,
    device: str = "cpu",
    require_calibration: bool = True,
    max_steps: int = DEFAULT_MAX_STEPS,
    max_job_steps: int = DEFAULT_MAX_JOB_STEPS,
) -> LoadedModel:
    """Load ``version_dir`` (``<root>/<name>/<version>``) onto ``device``.

    ``require_calibration=False`` lets a critic load uncalibrated (used by the calibrate command only).
    ``max_steps`` / ``max_job_steps``: the server's step limits, which sampler ``steps`` defaults are noted against.
    """
    start = time.perf_counter()
    path = version_dir / MANIFEST_NAME
    expect_version = int(version_dir.name) if version_dir.name.isdigit() else None
    m = read_manifest(path, expect_name=version_dir.parent.name, expect_version=expect_version)
    _check_sampler_defaults(m, path)
    nets: dict[str, Network] = {}
    arch_notes: list[str] = []
    for role in ("generator", "discriminator"):
        spec = m.generator if role == "generator" else m.discriminator
        f = verified_file(version_dir, spec.file, spec.sha256, path, f"{role}.file", f"{role}.sha256")
        nets[role] = load_network(spec, f, device, path, role)
        if spec.arch and (stale := arch_changed_on_disk(spec.arch)):
            arch_notes.append(f"{role}.arch: {stale}")
            log.warning("%s: %s", m.id, arch_notes[-1])
    g, d = nets["generator"], nets["discriminator"]
    x_probe, g_notes = _probe(m, g, device, path)
    raw_logit, notes = logit_head(d, m.discriminator.output, x_probe, path)
    _check_d_rows(raw_logit, x_probe, path)
    notes = steps_notes(m, max_steps, max_job_steps) + arch_notes + g_notes + range_notes(m, x_probe) + notes
    cal = _calibration(m, path, require_calibration)
    holdout = _load_holdout(m, version_dir, path, device)
    no_grad_reason = _gradient_break(m, g.fn, raw_logit, device) if g.differentiable and d.differentiable else None
    if no_grad_reason is not None:
        notes.append(f"forward only: {no_grad_reason}")
    elif g.differentiable and d.differentiable:
        notes += zero_gradient_notes(g.fn, raw_logit, probe_latents(m, device))
    differentiable = g.differentiable and d.differentiable and no_grad_reason is None
    runtime = apply_runtime(m, path, g, d, raw_logit, device, differentiable)
    generator, raw_logit = runtime.generator, runtime.raw_logit
    notes += runtime.notes

    def logit(x: Tensor) -> Tensor:
        return cal.apply(raw_logit(x))

    real_logit = None if holdout is None else batched_logits(logit, holdout)
    pair = GanPair(
        generator=generator,
        logit=logit,
        latent_shape=tuple(m.latent.shape),
        differentiable=differentiable,
        real=holdout,
        real_logit=real_logit,
    )
    shared = g.module is not None and g.module is d.module
    memory = g.memory_bytes + (0 if shared else d.memory_bytes)
    memory += 0 if holdout is None else holdout.numel() * holdout.element_size()
    memory += int(runtime.info.get("onnxruntime_model_bytes", 0))  # forward = "onnxruntime" holds a second copy
    return LoadedModel(
        id=m.id,
        manifest=m,
        manifest_path=path,
        pair=pair,
        raw_logit=raw_logit,
        calibration=cal,
        device=device,
        memory_bytes=memory,
        load_seconds=time.perf_counter() - start,
        backends={"generator": g.backend, "discriminator": d.backend},
        notes=tuple(notes),
        networks=dict(nets),
        no_grad_reason=no_grad_reason,
        runtime=runtime.info,
    )
