"""From a validated request to engine :class:`Work`, and from a :class:`ChainResult` to the response.

Shared by the sampling route and the job runner. Every limit is checked here, once, with the parameter, the value
and the limit in the message; nothing past this point re-validates.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any, NamedTuple

from service.api.encoding import can_png
from service.api.errors import InvalidRequest, NotFound, TooLarge
from service.api.hub import ModelHub
from service.api.schemas import SAMPLER_NAMES, SampleRequest
from service.config import Settings
from service.engine.ticket import Priority, Work
from service.samplers.base import SamplerParamError, UnsupportedPairError
from service.samplers.options import UnknownOptionError


class Limits(NamedTuple):
    max_n: int
    max_steps: int
    max_chain_steps: int
    max_timeout_s: float | None
    default_timeout_s: float | None
    max_result_bytes: int
    for_jobs: bool  # the limits of jobs (the max_job_* settings), named so in messages

    def setting(self, name: str) -> str:
        """The setting behind limit ``name`` ("chain_steps" -> max_chain_steps, or max_job_chain_steps for jobs)."""
        return f"max_job_{name}" if self.for_jobs else f"max_{name}"

    @staticmethod
    def interactive(s: Settings) -> Limits:
        return Limits(s.max_n, s.max_steps, s.max_chain_steps, s.max_timeout_s, s.default_timeout_s,
                      s.max_result_bytes, False)

    @staticmethod
    def job(s: Settings) -> Limits:
        return Limits(s.max_job_n, s.max_job_steps, s.max_job_chain_steps, None, None, s.max_job_result_bytes, True)


@dataclass(frozen=True)
class Prepared:
    """Everything needed to run a request and to answer it."""

    work: Work
    model: Any  # LoadedModel
    sampler: str
    output: str
    diagnostics: str
    exact: bool


def prepare(
    req: SampleRequest, sampler: str, hub: ModelHub, limits: Limits, priority: Priority, max_trace_points: int
) -> Prepared:
    """Check the request against the sampler, the model and ``limits``; build its Work (device least loaded)."""
    if sampler not in SAMPLER_NAMES or sampler not in hub.samplers:
        raise NotFound(f"unknown sampler {sampler!r}; one of {sorted(hub.samplers)}", "sampler")
    if req.n > limits.max_n:
        raise InvalidRequest(f"n must be <= {limits.max_n}, got {req.n}", "n")
    if req.steps is not None and req.steps > limits.max_steps:
        raise InvalidRequest(f"steps must be <= {limits.max_steps}, got {req.steps}", "steps")
    if req.timeout_s is not None and limits.max_timeout_s is not None and req.timeout_s > limits.max_timeout_s:
        raise InvalidRequest(f"timeout_s must be <= {limits.max_timeout_s:g}, got {req.timeout_s:g}", "timeout_s")
    models = hub.get(req.model)  # 404 unknown, 503 not ready
    model = models[0]
    entry = hub.samplers[sampler]
    ok, reason = model.supports(sampler)
    if not ok:
        raise UnsupportedPairError(sampler, reason or "not supported by this model")
    try:
        # the model's [samplers.<name>] option keys (e.g. drs logit_max from calibrate) under the request's options
        options = entry.options_cls.from_defaults(model.sampler_defaults(sampler), dict(req.options))
    except UnknownOptionError as e:
        raise InvalidRequest(f"unknown option {e.param!r} for sampler {sampler!r}; known: {e.known}",
                             f"options.{e.param}") from e
    except SamplerParamError as e:
        raise InvalidRequest(str(e), f"options.{e.param}") from e
    defaults = dict(model.sampler_defaults(sampler))
    default_steps = int(defaults.pop("steps", entry.cls.default_steps))
    specs = {s.name: s for s in entry.cls.param_specs}
    for name, value in req.params.items():
        if name not in specs:
            raise InvalidRequest(f"unknown param {name!r} for sampler {sampler!r}; known: {sorted(specs)}",
                                 f"params.{name}")
        try:
            specs[name].check(value)
        except SamplerParamError as e:
            raise InvalidRequest(str(e), f"params.{name}") from e
    params = {k: float(v) for k, v in defaults.items() if k in specs}
    params.update(req.params)
    steps = req.steps if req.steps is not None else default_steps
    if sampler == "raw":
        steps = 0
    if steps > limits.max_steps:
        raise InvalidRequest(f"steps must be <= {limits.max_steps}, got {steps} (the model's default)", "steps")
    if req.n * max(steps, 1) > limits.max_chain_steps:
        raise TooLarge(
            f"n × steps must be <= {limits.max_chain_steps} ({limits.setting('chain_steps')}), got {req.n} × "
            f"{steps} = {req.n * steps}", "steps")
    sample_bytes = 4 * math.prod(model.manifest.output.shape)  # float32, as the engine holds samples
    if req.n * sample_bytes > limits.max_result_bytes:
        fit = limits.max_result_bytes // sample_bytes
        raise TooLarge(
            f"n × sample size must be <= {limits.max_result_bytes} bytes ({limits.setting('result_bytes')}), got "
            f"{req.n} × {sample_bytes} bytes (float32 {list(model.manifest.output.shape)}) = {req.n * sample_bytes}: "
            f"at most {fit} samples of {model.id} per {'job' if limits.for_jobs else 'request'}", "n")
    kind, shape = model.manifest.output.kind, tuple(model.manifest.output.shape)
    output = req.output or ("png" if can_png(kind, shape) is None else "array")
    if output == "png" and (why := can_png(kind, shape)) is not None:
        raise InvalidRequest(why, "output")
    timeout = req.timeout_s if req.timeout_s is not None else limits.default_timeout_s
    seed = req.seed if req.seed is not None else secrets.randbelow(2**63)
    device = hub.place([m.device for m in models])
    loaded = next(m for m in models if m.device == device)
    algo = hub.algo(loaded, sampler, options)
    trace_every = 0
    if req.diagnostics == "traces" and steps > 0:
        trace_every = max(1, math.ceil(steps / (max_trace_points - 1)))
    work = Work(
        key=hub.pool_key(loaded, sampler, options),
        algo=algo,
        n=req.n,
        seed=seed,
        steps=steps,
        params=params,
        priority=priority,
        threads=(loaded.runtime or {}).get("threads"),
        timeout_s=timeout,
        trace_every=trace_every,
    )
    return Prepared(work, loaded, sampler, output, req.diagnostics, bool(algo.exact()))
