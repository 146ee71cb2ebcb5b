"""ModelInfo (docs/api.md "Models") for a registry entry: manifest, state, calibration, sampler support and, for a
loaded version, how it runs (``runtime``, ``notes``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from service.api.hub import ModelHub
from service.api.schemas import ModelInfo, OutputInfo, ParamInfo, SamplerSupport
from service.registry import LoadedModel, ModelEntry, RegistryError, read_manifest
from service.registry.schema import MANIFEST_NAME, Manifest
from service.samplers.base import SamplerError


def model_info(hub: ModelHub, e: ModelEntry) -> ModelInfo:
    state, error = hub.state_of(e)
    model = hub.loaded(e)
    manifest: Manifest | None = model.manifest if model is not None else None
    if manifest is None:
        try:
            manifest = read_manifest(e.path / MANIFEST_NAME)
        except RegistryError as exc:
            error = error or str(exc)
    info = ModelInfo(name=e.name, version=e.version, id=e.id, state=state, error=error)  # type: ignore[arg-type]
    if manifest is None:
        return info
    devices = [m.device for m in hub.get(e.id)] if model is not None else []
    info.description = manifest.description
    info.device = ",".join(devices) or None
    info.latent_shape = list(manifest.latent.shape)
    out = manifest.output
    info.output = OutputInfo(kind=out.kind, shape=list(out.shape), range=None if out.range is None else list(out.range))
    info.formats = {"generator": manifest.generator.format, "discriminator": manifest.discriminator.format}
    info.discriminator_output = manifest.discriminator.output
    if manifest.calibration is not None:
        info.calibration = manifest.calibration.model_dump(exclude_none=True, exclude={"x", "y"})
    elif model is not None:
        info.calibration = {"method": "identity"}
    if model is not None:
        info.samplers = {name: _support(hub, model, name) for name in hub.samplers}
        info.runtime = dict(model.runtime)
        info.notes = list(model.notes)
    return info


def _support(hub: ModelHub, model: LoadedModel, name: str) -> SamplerSupport:
    entry = hub.samplers[name]
    ok, reason = model.supports(name)
    defaults = model.sampler_defaults(name)
    exact: bool | None = None
    if ok:
        try:
            # the options a request that names none gets: the sampler the model's warm-up already built
            options = entry.options_cls.from_defaults(model.sampler_defaults(name), {})
            exact = bool(hub.algo(model, name, options).exact())
        except SamplerError as exc:
            ok, reason = False, str(exc)
    params = [
        ParamInfo(name=s.name, default=float(defaults.get(s.name, s.default)), low=s.low, high=s.high, doc=s.doc,
                  integer=s.integer)
        for s in entry.cls.param_specs
    ]
    return SamplerSupport(
        supported=ok,
        reason=reason,
        exact=exact,
        default_steps=int(defaults.get("steps", entry.cls.default_steps)),
        params=params,
        options=_options(entry.options_cls),
    )


def _options(options_cls: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for f in dataclasses.fields(options_cls):
        constraint = f.metadata.get("option")
        out[f.name] = constraint.describe() if constraint is not None else []
    return out
