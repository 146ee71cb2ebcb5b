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
from service.registry.heads import logit_head
from service.registry.load_notes import range_notes, steps_notes, zero_gradient_notes
from service.registry.loaders import Network, arch_changed_on_disk, load_network
from service.registry.probes import check_d_rows, gradient_break, probe_g, probe_latents
from service.registry.runtime import apply_runtime
from service.registry.schema import MANIFEST_NAME, Manifest, read_manifest
from service.samplers.base import GanPair
from service.samplers.calibration import IDENTITY, Calibration

log = logging.getLogger(__name__)

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
    x_probe, g_notes = probe_g(m, g, device, path)
    raw_logit, notes = logit_head(d, m.discriminator.output, x_probe, path)
    check_d_rows(raw_logit, x_probe, path)
    notes = steps_notes(m, max_steps, max_job_steps) + arch_notes + g_notes + range_notes(m, x_probe) + notes
    cal = _calibration(m, path, require_calibration)
    holdout = _load_holdout(m, version_dir, path, device)
    no_grad_reason = gradient_break(m, g.fn, raw_logit, device) if g.differentiable and d.differentiable else None
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
