"""Pydantic schemas of docs/api.md: requests validated strictly at the edge, responses that generate the OpenAPI.

Requests forbid unknown fields, take no type coercion (``"n": "4"`` is a 422) and reject NaN/±inf (JSON ``NaN`` /
``Infinity`` tokens included). Limits that depend on the server's settings (n, steps, n × steps, timeout) are
checked in ``service.api.sampling`` against :class:`service.config.Settings`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

SAMPLER_NAMES = ("raw", "mh", "rep", "ddls", "drs", "sir")
Sampler = Literal["raw", "mh", "rep", "ddls", "drs", "sir"]
OutputFormat = Literal["png", "array"]
DiagnosticsLevel = Literal["none", "summary", "chains", "traces"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
OptionValue = str | bool | int | float | None

MODEL_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(@[0-9]{1,9})?$"
MAX_SEED = 2**63

_REQUEST_EXAMPLE: Any = {  # a shipped demo model, so "Try it out" in /docs works on the quick start's server
    "model": "gaussians25",
    "n": 16,
    "seed": 7,
    "steps": 640,
    "params": {},
    "options": {"init": "generator"},
    "output": "array",
    "diagnostics": "summary",
    "timeout_s": 30,
}


class FieldValueError(ValueError):
    """A validator's error about one field inside the validated one (``param``, e.g. ``options.init``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


NULL_MEANS_DEFAULT = ("params", "options", "diagnostics")
"""Fields whose JSON null means their default (the validator below); the other optional fields default to None."""


def _request_schema(example: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """The request schema's examples, and null allowed where the server takes it as the default: a generated client
    (or a fuzzer) reads the same contract the server enforces."""

    def extra(schema: dict[str, Any]) -> None:
        schema["examples"] = [example]
        props = schema.get("properties", {})
        for name in NULL_MEANS_DEFAULT:
            if name in props:
                prop = props[name]
                keep = {k: prop.pop(k) for k in ("title", "description", "default") if k in prop}
                props[name] = {"anyOf": [prop, {"type": "null"}], **keep}

    return extra


INTEGER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def exact_integer_bounds(node: Any) -> Any:
    """The OpenAPI document with the bounds of integer schemas written as JSON integers. FastAPI's document model
    holds every bound as a float, so the seed's limit 2**63 came out as 9.223372036854776e+18, which a client cannot
    tell from 2**63 - 1 (2**63 itself is exact in a double, so the integer is restored exactly)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in INTEGER_BOUNDS:
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = int(value)
        for value in node.values():
            exact_integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            exact_integer_bounds(value)
    return node


class SampleRequest(_Strict):
    """Body of ``POST /v1/samples/{sampler}``."""

    model_config = ConfigDict(json_schema_extra=_request_schema(_REQUEST_EXAMPLE))

    model: str = Field(pattern=MODEL_REF_PATTERN, description='"name" (latest ready version) or "name@version"')
    n: int = Field(ge=1, description="samples = chains, 1 ≤ n ≤ limits.max_n")
    seed: int | None = Field(default=None, ge=0, lt=MAX_SEED, description="chosen by the server when absent")
    steps: int | None = Field(default=None, ge=1, description="chain length K / candidates N / max tries")
    params: dict[str, float] = Field(default_factory=dict, description="per-sampler numeric params")
    options: dict[str, Any] = Field(default_factory=dict, description="per-sampler categorical options")
    output: OutputFormat | None = Field(default=None, description="png (image default) | array (vector default)")
    diagnostics: DiagnosticsLevel = "summary"
    timeout_s: float | None = Field(default=None, gt=0, description="deadline, queue time included")

    @field_validator(*NULL_MEANS_DEFAULT, mode="before")
    @classmethod
    def _null_is_the_default(cls, v: Any, info: ValidationInfo) -> Any:
        """JSON null means "the default" for every optional field, as it does for seed, steps and the rest."""
        if v is None and info.field_name is not None:
            return cls.model_fields[info.field_name].get_default(call_default_factory=True)
        return v

    @field_validator("options")
    @classmethod
    def _scalar_options(cls, v: dict[str, Any]) -> dict[str, Any]:
        """Scalars only; each option's own constraint (finite numbers included) is checked by its sampler."""
        for k, x in v.items():
            if not isinstance(x, OptionValue):
                raise FieldValueError(f"options.{k}", f"options.{k} must be a string, number, boolean or null, got {x!r}")
        return v


class JobRequest(SampleRequest):
    """Body of ``POST /v1/jobs``: a sampling request plus its sampler."""

    model_config = ConfigDict(json_schema_extra=_request_schema({"sampler": "mh", **_REQUEST_EXAMPLE, "n": 4096}))

    sampler: Sampler


class ErrorDetail(BaseModel):
    type: str
    message: str
    param: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": {"type": "invalid_request", "message": "n must be <= 1024, got 5000",
                                                   "param": "n"}}]}
    )


class ChainDiagnostics(BaseModel):
    model_config = ConfigDict(extra="allow")

    chain: int
    accepted: int
    acceptance_rate: float | None
    logit_initial: float | None
    logit_final: float | None
    restarted: bool = False
    nonfinite: int
    distinct_states: int


class TracesOut(BaseModel):
    every: int = Field(description="thinning: point j is step j·every")
    logit: list[list[float | None]] = Field(description="(chains, points)")
    energy: list[list[float | None]]
    z_norm: list[list[float | None]]


class Diagnostics(BaseModel):
    acceptance_rate: float | None = Field(description="mean over chains of each chain's mean min(1, alpha); 1.0 for raw, which keeps "
                                          "every draw (proposals is 0)")
    accepted: int
    proposals: int
    nonfinite: int
    calibrated: bool
    exact: bool | None = None
    logit_initial_mean: float | None
    logit_final_mean: float | None
    sampler: dict[str, Any] = Field(default_factory=dict, description="sampler-specific (sir ess, drs logit_max)")
    chains: list[ChainDiagnostics] | None = None
    acceptance_curve: list[float | None] | None = None
    acceptance_curve_every: int | None = Field(default=None, description="thinning of acceptance_curve, in steps")
    traces: TracesOut | None = None
    ess: dict[str, float | None] | None = None
    rhat: dict[str, float | None] | None = None


class Timing(BaseModel):
    queue_s: float
    compute_s: float
    total_s: float


class SampleResponse(BaseModel):
    model: str = Field(description="resolved id name@version")
    sampler: Sampler
    seed: int
    n: int
    steps: int
    output: OutputFormat
    shape: list[int] = Field(description="shape of one sample")
    samples: list[Any] = Field(description="png: base64 PNG strings; array: nested lists of floats")
    diagnostics: Diagnostics | None = None
    timing: Timing

    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "model": "gaussians25@1", "sampler": "mh", "seed": 7, "n": 2, "steps": 640, "output": "array",
            "shape": [2], "samples": [[1.98, -0.03], [-4.02, 2.01]],
            "diagnostics": {"acceptance_rate": 0.21, "accepted": 270, "proposals": 1280, "nonfinite": 0,
                            "calibrated": True, "exact": True, "logit_initial_mean": -0.4, "logit_final_mean": 0.6,
                            "sampler": {}},
            "timing": {"queue_s": 0.001, "compute_s": 0.2, "total_s": 0.21},
        }]}
    )


class ParamInfo(BaseModel):
    name: str
    default: float
    low: float
    high: float
    doc: str
    integer: bool = False


class SamplerSupport(BaseModel):
    supported: bool
    reason: str | None
    exact: bool | None
    default_steps: int
    params: list[ParamInfo]
    options: dict[str, list[Any]]


class OutputInfo(BaseModel):
    kind: str
    shape: list[int]
    range: list[float] | None = None


class ModelInfo(BaseModel):
    name: str
    version: int
    id: str
    description: str = ""
    state: Literal["loading", "ready", "failed", "unloaded"]
    error: str | None = None
    device: str | None = None
    latent_shape: list[int] | None = None
    output: OutputInfo | None = None
    formats: dict[str, str] = Field(default_factory=dict)
    discriminator_output: str | None = None
    calibration: dict[str, Any] | None = None
    samplers: dict[str, SamplerSupport] = Field(default_factory=dict)
    runtime: dict[str, Any] | None = Field(
        default=None,
        description="how a loaded version runs ([runtime] of model.toml, as decided at load): memory_format_setting, "
        "memory_format, memory_format_reason, max_abs_logit_diff_channels_last, compile_setting, compile, "
        "forward_setting, forward, forward_reason, precision_setting, precision, precision_reason, ...; "
        "null when not loaded",
    )
    notes: list[str] = Field(
        default_factory=list,
        description="how the loaded networks were adapted (memory format, torch.compile, sigmoid head removed); "
        "[] when not loaded",
    )


class IgnoredEntry(BaseModel):
    path: str = Field(description="relative to the models directory")
    reason: str = Field(description="why the scan skipped it, and how to fix it")


class ModelList(BaseModel):
    models: list[ModelInfo]
    ignored: list[IgnoredEntry] = Field(
        default_factory=list, description="entries of the models directory that are not model versions (e.g. 'v4')")


class Job(BaseModel):
    id: str
    state: JobState
    progress: float = Field(ge=0, le=1)
    steps_done: int
    steps_total: int
    created_at: str
    finished_at: str | None = None
    error: str | None = None
    attempts: int = Field(
        default=0, ge=0, description="times the job was started and not ended by a graceful shutdown: 1 while it "
        "runs the first time, more when a server that died while running it ran it again (job_max_attempts)")
    request: dict[str, Any]


class JobList(BaseModel):
    jobs: list[Job] = Field(description="newest first (by created_at, then creation order)")
    next: str | None = Field(
        default=None, description="opaque cursor of the next page (pass it as ?cursor=); null on the last page")


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    models: dict[str, str] = Field(description='id -> "ready" | "failed: ..." | "loading"')
    draining: bool = Field(default=False, description="the server is shutting down: it takes no new work")


class RequestLimits(BaseModel):
    """What one synchronous sampling request may ask for (the ``max_*`` settings)."""

    max_n: int
    max_steps: int
    max_chain_steps: int = Field(description="n × steps")
    max_result_bytes: int = Field(description="n × one sample's float32 bytes")
    max_timeout_s: float | None
    default_timeout_s: float | None
    max_body_bytes: int
    max_queue_chain_steps: int = Field(description="chain-steps queued server-wide before requests get 429")


class JobLimits(BaseModel):
    """What one job may ask for and how many may wait (the ``max_job_*`` and job settings)."""

    max_n: int
    max_steps: int
    max_chain_steps: int
    max_result_bytes: int
    max_queued_jobs: int
    max_queued_job_chain_steps: int | None
    max_running_jobs: int
    retention_s: float = Field(description="a finished job is deleted this long after it ended; 0: kept")


class ServerLimits(BaseModel):
    """Body of ``GET /v1/limits``: the limits this server enforces, so that clients can size requests."""

    requests: RequestLimits
    jobs: JobLimits


class AdminResult(BaseModel):
    action: str
    model: ModelInfo | None = None
    calibration: dict[str, Any] | None = None
