"""Typed responses of the gansampler HTTP API (pydantic v2), mirroring ``docs/api.md``.

Every model allows extra fields, so a newer server adding fields never breaks an older SDK; fields a server may
leave out have defaults. Decoding helpers (PNG → PIL, arrays → numpy) live in :mod:`gansampler._decode` and need
the optional extras.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import _decode
from ._constants import TERMINAL_JOB_STATES

if TYPE_CHECKING:
    import numpy
    from PIL.Image import Image

__all__ = [
    "Calibration",
    "ChainDiagnostics",
    "Diagnostics",
    "JobLimits",
    "JobList",
    "JobStatus",
    "ModelInfo",
    "OutputSpec",
    "ParamInfo",
    "Readiness",
    "RequestLimits",
    "SampleBatch",
    "SamplerInfo",
    "ServerLimits",
    "Timing",
    "Traces",
]

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
ModelState = Literal["loading", "ready", "failed", "unloaded"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=(), frozen=True)


# --- sampling ---------------------------------------------------------------------------------------------------


class Timing(_Model):
    """Server-side seconds: waiting in the admission queue, computing, and in total."""

    queue_s: float = 0.0
    compute_s: float = 0.0
    total_s: float = 0.0


class ChainDiagnostics(_Model):
    """One chain's summary (``diagnostics="chains"`` or ``"traces"``)."""

    chain: int
    accepted: int | None = None
    acceptance_rate: float | None = None
    logit_initial: float | None = None
    logit_final: float | None = None
    restarted: bool | None = None
    nonfinite: int | None = None
    distinct_states: int | None = None


class Traces(_Model):
    """Per-chain traces thinned by ``every``: each is a (chains, T/every) nested list (None where non-finite)."""

    every: int = 1
    logit: list[list[float | None]] = Field(default_factory=list)
    energy: list[list[float | None]] = Field(default_factory=list)
    z_norm: list[list[float | None]] = Field(default_factory=list)


class Diagnostics(_Model):
    """Chain diagnostics of one sampling request; which fields are present depends on ``diagnostics=``."""

    acceptance_rate: float | None = None
    accepted: int | None = None
    proposals: int | None = None
    nonfinite: int | None = None
    calibrated: bool | None = None
    exact: bool | None = None
    logit_initial_mean: float | None = None
    logit_final_mean: float | None = None
    sampler: dict[str, Any] = Field(default_factory=dict)
    chains: list[ChainDiagnostics] | None = None
    acceptance_curve: list[float | None] | None = None
    acceptance_curve_every: int | None = None
    traces: Traces | None = None
    ess: dict[str, float | None] | None = None
    rhat: dict[str, float | None] | None = None


class SampleBatch(_Model):
    """The response of ``POST /v1/samples/{sampler}`` and ``GET /v1/jobs/{id}/result``.

    ``samples`` holds n base64 PNG strings (``output="png"``) or n nested lists of floats of shape ``shape``
    (``output="array"``). ``images`` and ``arrays`` decode them (optional extras ``Pillow`` / ``numpy``).
    """

    model: str
    sampler: str
    seed: int
    n: int
    steps: int | None = None
    output: Literal["png", "array"]
    shape: list[int]
    samples: list[Any]
    diagnostics: Diagnostics | None = None
    timing: Timing = Field(default_factory=Timing)

    @property
    def images(self) -> list[Image]:
        """The n samples as PIL images (``output="png"`` only; needs Pillow). Decoded on every access: keep the list."""
        if self.output != "png":
            raise ValueError(f"images needs output='png', this batch has output={self.output!r}: use .arrays")
        return [_decode.png_to_image(s) for s in self.samples]

    @property
    def png_bytes(self) -> list[bytes]:
        """The n samples as PNG file contents (``output="png"`` only; no extra needed)."""
        if self.output != "png":
            raise ValueError(f"png_bytes needs output='png', this batch has output={self.output!r}")
        return [_decode.b64_to_bytes(s) for s in self.samples]

    @property
    def arrays(self) -> numpy.ndarray:
        """All samples stacked, needs numpy.

        ``output="array"``: float32 ``(n, *shape)`` in the model's output range.
        ``output="png"``: uint8 pixels ``(n, H, W)`` for one channel or ``(n, H, W, C)`` (needs Pillow too).
        """
        if self.output == "array":
            return _decode.lists_to_array(self.samples, self.shape)
        return _decode.stack_images(self.images)

    def save(self, directory: str | Path, *, grid: bool = True) -> list[Path]:
        """Write samples (``sample_0000.png`` ... or ``samples.npy``), ``grid.png`` and ``diagnostics.json``."""
        return _decode.save_batch(self, Path(directory), grid=grid)


# --- models -----------------------------------------------------------------------------------------------------


class OutputSpec(_Model):
    """What a model's generator produces: ``kind`` (``"image"`` or ``"vector"``), shape of one sample, range."""

    kind: str
    shape: list[int]
    range: list[float] | None = None


class Calibration(_Model):
    """How the discriminator's logit is calibrated, and how well (on held-out data)."""

    method: str | None = None
    a: float | None = None
    b: float | None = None
    auc: float | None = None
    dawid_z: float | None = None
    ece: float | None = None
    brier: float | None = None


class ParamInfo(_Model):
    """A numeric sampler parameter: default and allowed closed range ``[low, high]``."""

    name: str
    default: float | None = None
    low: float | None = None
    high: float | None = None
    doc: str | None = None
    integer: bool = False


class SamplerInfo(_Model):
    """Whether a model can run a sampler, and that sampler's parameters and categorical options."""

    supported: bool = True
    reason: str | None = None
    exact: bool | None = None
    default_steps: int | None = None
    params: list[ParamInfo] = Field(default_factory=list)
    options: dict[str, list[Any]] = Field(default_factory=dict)


class ModelInfo(_Model):
    """One version of one model in the server's registry (``GET /v1/models``)."""

    name: str
    version: int
    id: str
    description: str | None = None
    state: ModelState | str
    error: str | dict[str, Any] | None = None
    device: str | None = None
    latent_shape: list[int] | None = None
    output: OutputSpec | None = None
    formats: dict[str, str] = Field(default_factory=dict)
    discriminator_output: str | None = None
    calibration: Calibration | None = None
    samplers: dict[str, SamplerInfo] = Field(default_factory=dict)


class Readiness(_Model):
    """``GET /readyz``: ``ready`` once every model is ready or failed-and-reported and one is ready;
    ``models``: id → ``"ready" | "failed: ..." | "loading"``; ``draining``: the server is shutting down and takes no
    new work (older servers do not send it: False)."""

    ready: bool
    models: dict[str, str] = Field(default_factory=dict)
    draining: bool = False


class RequestLimits(_Model):
    """What one synchronous request may ask for: ``max_n``, ``max_steps``, ``max_chain_steps`` (n × steps),
    ``max_result_bytes`` (n × one sample's float32 bytes), timeouts, ``max_body_bytes``, and the chain-steps queued
    server-wide before requests get 429 (``max_queue_chain_steps``)."""

    max_n: int
    max_steps: int
    max_chain_steps: int
    max_result_bytes: int
    max_timeout_s: float | None = None
    default_timeout_s: float | None = None
    max_body_bytes: int
    max_queue_chain_steps: int


class JobLimits(_Model):
    """What one job may ask for, how many may wait or run, and how long finished ones are kept (0: forever)."""

    max_n: int
    max_steps: int
    max_chain_steps: int
    max_result_bytes: int
    max_queued_jobs: int
    max_queued_job_chain_steps: int | None = None
    max_running_jobs: int
    retention_s: float


class ServerLimits(_Model):
    """``GET /v1/limits``: the limits the server enforces (``client.limits.get()``)."""

    requests: RequestLimits
    jobs: JobLimits


# --- jobs -------------------------------------------------------------------------------------------------------


class JobStatus(_Model):
    """A job's state (``GET /v1/jobs/{id}``); ``progress`` in [0, 1]."""

    id: str
    state: JobState | str
    progress: float = 0.0
    steps_done: int | None = None
    steps_total: int | None = None
    created_at: datetime | str | None = None
    finished_at: datetime | str | None = None
    error: str | dict[str, Any] | None = None
    attempts: int | None = None
    """Starts of the job that a graceful shutdown did not end (a crashed server runs it again); None from servers
    that do not report it."""
    request: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """True once the job is succeeded, failed, cancelled or interrupted."""
        return self.state in TERMINAL_JOB_STATES


class JobList(_Model):
    """A page of jobs (``GET /v1/jobs``), newest first; ``next`` is the cursor of the next page, None on the last."""

    jobs: list[JobStatus] = Field(default_factory=list)
    next: str | None = None
