"""Server settings: pydantic-settings, environment prefix ``GANSAMPLER_``.

Every default is a named constant below; docs and errors quote them from here. Limits apply per request unless
stated; jobs have their own, larger ones. Examples::

    GANSAMPLER_MODELS_DIR=models GANSAMPLER_DEVICE=cuda:0,cuda:1 GANSAMPLER_MAX_N=256 gansampler-server serve
    GANSAMPLER_API_KEYS=key1,key2 GANSAMPLER_ADMIN_TOKEN=secret ...
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "GANSAMPLER_"
CLIENT_ENV = frozenset({"GANSAMPLER_URL", "GANSAMPLER_API_KEY"})  # the SDK's and CLI's, not the server's

DEFAULT_MODELS_DIR = Path("models")
DEFAULT_DEVICE = "cpu"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_DATA_DIR = Path(".gansampler")
DEFAULT_SHUTDOWN_GRACE_S = 20.0  # on SIGTERM/SIGINT: how long running requests may finish before they get a 503

# Synchronous request limits.
DEFAULT_MAX_N = 1024
DEFAULT_MAX_STEPS = 10_000
DEFAULT_MAX_CHAIN_STEPS = 2_000_000  # n × steps of one request
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_RESULT_BYTES = 2**30  # n × one sample's float32 bytes: a request's samples held in memory
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_TIMEOUT_S = 600.0

# Engine.
DEFAULT_MAX_BATCH_CHAINS = 1024  # rows stepped together in one pool iteration
DEFAULT_MAX_QUEUE_CHAIN_STEPS = 20_000_000  # admitted but not yet run, all synchronous requests together
DEFAULT_STEPS_PER_ITERATION = 1  # steps a pool runs between admission points
DEFAULT_BLOCK_PROPOSALS = 4096  # chain-steps per pool step (service.samplers.block: blocks of steps)
DEFAULT_JOB_BATCH_FRACTION = 0.5  # share of a pool's rows job chains may hold, so requests always find room
DEFAULT_RETRY_AFTER_S = 1  # minimum Retry-After on 429 / 503
DEFAULT_DEVICE_MEMORY_FRACTION = 0.8  # share of a GPU's free memory (at a pool's first step) one step may use

# Jobs.
DEFAULT_MAX_JOB_N = 65_536
DEFAULT_MAX_JOB_STEPS = 100_000
DEFAULT_MAX_JOB_CHAIN_STEPS = 200_000_000
DEFAULT_MAX_JOB_RESULT_BYTES = 8 * 2**30
DEFAULT_MAX_RUNNING_JOBS = 2
DEFAULT_JOB_PROGRESS_INTERVAL_S = 0.5  # how often progress is persisted and streamed
DEFAULT_MAX_QUEUED_JOBS = 1000  # jobs waiting to start; one more gets 429
DEFAULT_JOB_RETENTION_S = 7 * 24 * 3600.0  # a finished job (row and result files) is deleted this long after it ended
DEFAULT_JOB_HEARTBEAT_S = 15.0  # an events stream with nothing new sends a comment line this often

# Diagnostics.
DEFAULT_MAX_TRACE_POINTS = 200  # per chain; traces are thinned to at most this many points


class Settings(BaseSettings):
    """Everything the server reads from its environment (or from ``create_app(Settings(...))`` in tests)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    models_dir: Path = DEFAULT_MODELS_DIR
    device: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(DEFAULT_DEVICE,),
        description="devices to serve on: 'cpu', 'cuda:0', or a comma list 'cuda:0,cuda:1' (one worker each; "
        "'cpu:0,cpu:1' runs two CPU workers)",
    )
    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    data_dir: Path = DEFAULT_DATA_DIR
    torch_threads: int | None = Field(
        default=None, ge=1,
        description="torch intra-op threads for the process (None: torch's default, one per core). On a CPU host "
        "shared with other work, also set OMP_WAIT_POLICY=PASSIVE in the environment (see README)",
    )
    malloc_tuning: bool = Field(
        default=True,
        description="raise glibc malloc's mmap / trim thresholds at serve start (service/allocator.py): large "
        "per-step buffers stay in the heap (mh 1.2-1.5x on the demo models); false keeps glibc's defaults",
    )
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(default=(), description="comma list; empty: no auth")
    admin_token: str | None = None
    shutdown_grace_s: float = Field(
        default=DEFAULT_SHUTDOWN_GRACE_S, ge=0,
        description="on SIGTERM or SIGINT the server stops taking new work and gives running requests this many "
        "seconds to finish; what is still running then is answered 503 with Retry-After. Keep it below the "
        "supervisor's kill timeout (docker's stop_grace_period, Kubernetes' terminationGracePeriodSeconds)",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="comma list of browser origins allowed to call the API cross-origin (e.g. "
        "'https://dash.example.com'; '*' for any); empty: no CORS headers",
    )

    max_n: int = Field(default=DEFAULT_MAX_N, ge=1)
    max_steps: int = Field(default=DEFAULT_MAX_STEPS, ge=1)
    max_chain_steps: int = Field(default=DEFAULT_MAX_CHAIN_STEPS, ge=1)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=256)
    max_result_bytes: int = Field(
        default=DEFAULT_MAX_RESULT_BYTES, ge=1,
        description="most bytes of samples one request may ask for (n × one sample's float32 size): a model with "
        "large outputs gets a 413 naming how many samples fit, instead of an allocation that fails the requests "
        "batched with it or exhausts the host",
    )
    default_timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0)
    max_timeout_s: float = Field(default=DEFAULT_MAX_TIMEOUT_S, gt=0)

    max_batch_chains: int = Field(default=DEFAULT_MAX_BATCH_CHAINS, ge=1)
    max_queue_chain_steps: int = Field(default=DEFAULT_MAX_QUEUE_CHAIN_STEPS, ge=1)
    steps_per_iteration: int = Field(default=DEFAULT_STEPS_PER_ITERATION, ge=1)
    block_proposals: int = Field(
        default=DEFAULT_BLOCK_PROPOSALS, ge=1,
        description="chain-steps one pool step may run (chains x steps per chain): mh, drs and sir score a "
        "block's proposals in one G + D call, rep and ddls draw its random numbers in one call; 1 runs one step "
        "at a time. Same samples either way",
    )
    job_batch_fraction: float = Field(default=DEFAULT_JOB_BATCH_FRACTION, gt=0, le=1)
    retry_after_s: int = Field(default=DEFAULT_RETRY_AFTER_S, ge=1)
    device_memory_fraction: float = Field(
        default=DEFAULT_DEVICE_MEMORY_FRACTION, gt=0, le=1,
        description="on CUDA, the share of the device's free memory one pool step may use: each pool (model, "
        "sampler, options, device) measures its step's memory per row once and admits at most the rows that fit",
    )
    max_step_rows: int | None = Field(
        default=None, ge=1,
        description="most proposal rows one pool step may evaluate, on every device (None: on CUDA what fits "
        "the memory budget, on CPU no limit); admission fills a pool with at most min(max_batch_chains, "
        "this) chains and the rest sizes blocks of several proposals per chain",
    )

    max_job_n: int = Field(default=DEFAULT_MAX_JOB_N, ge=1)
    max_job_steps: int = Field(default=DEFAULT_MAX_JOB_STEPS, ge=1)
    max_job_chain_steps: int = Field(default=DEFAULT_MAX_JOB_CHAIN_STEPS, ge=1)
    max_job_result_bytes: int = Field(default=DEFAULT_MAX_JOB_RESULT_BYTES, ge=1)
    max_running_jobs: int = Field(default=DEFAULT_MAX_RUNNING_JOBS, ge=1)
    job_progress_interval_s: float = Field(default=DEFAULT_JOB_PROGRESS_INTERVAL_S, gt=0)
    max_queued_jobs: int = Field(
        default=DEFAULT_MAX_QUEUED_JOBS, ge=1,
        description="most jobs in state queued (waiting to start); POST /v1/jobs beyond it answers 429",
    )
    max_queued_job_chain_steps: int | None = Field(
        default=None, ge=1,
        description="most chain-steps (n x steps) all queued jobs may hold together; POST /v1/jobs that would pass "
        "it answers 429 (a job is always taken when none is queued). None: no limit",
    )
    job_retention_s: float = Field(
        default=DEFAULT_JOB_RETENTION_S, ge=0,
        description="seconds a finished job (succeeded, failed, cancelled, interrupted) and its result files are "
        "kept after it ended; then a sweep (at start and periodically) deletes them. 0 keeps them forever",
    )
    job_heartbeat_s: float = Field(
        default=DEFAULT_JOB_HEARTBEAT_S, gt=0,
        description="a job's events stream sends a comment line (': keep-alive') when nothing was sent for this "
        "many seconds, so proxies with idle timeouts keep it open",
    )

    max_trace_points: int = Field(default=DEFAULT_MAX_TRACE_POINTS, ge=2)

    @field_validator("device", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_comma_list(cls, v: object, info: ValidationInfo) -> object:
        if isinstance(v, str):
            items = tuple(s.strip() for s in v.split(",") if s.strip())
            if info.field_name == "api_keys" and v.strip() and not items:  # " , ": keys meant, none given
                raise ValueError(f"api_keys lists no key in {v!r}; leave it empty to serve without authentication")
            return items
        return v

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, v: object) -> object:
        """An empty token (``GANSAMPLER_ADMIN_TOKEN=`` or compose's ``${VAR:-}``) leaves the admin API off."""
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _limits_agree(self) -> Settings:
        """Limits that would contradict each other: requests that pass one limit and can never pass the other."""
        if self.default_timeout_s > self.max_timeout_s:
            raise ValueError(f"GANSAMPLER_DEFAULT_TIMEOUT_S={self.default_timeout_s:g} must be <= "
                             f"GANSAMPLER_MAX_TIMEOUT_S={self.max_timeout_s:g} (requests without timeout_s would run "
                             "past the maximum)")
        if self.max_queue_chain_steps < self.max_chain_steps:
            raise ValueError(f"GANSAMPLER_MAX_QUEUE_CHAIN_STEPS={self.max_queue_chain_steps} must be >= "
                             f"GANSAMPLER_MAX_CHAIN_STEPS={self.max_chain_steps} (a request within the second could "
                             "never be admitted: 429 forever)")
        return self

    @field_validator("device")
    @classmethod
    def _check_devices(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("device must name at least one device, e.g. 'cpu' or 'cuda:0'")
        for d in v:
            if not (d == "cpu" or d.startswith(("cpu:", "cuda", "mps"))):
                raise ValueError(f"device must be 'cpu[:i]', 'cuda[:i]' or 'mps', got {d!r}")
        if len(set(v)) != len(v):
            raise ValueError(f"device lists a device twice: {list(v)}")
        return v

    @property
    def devices(self) -> tuple[str, ...]:
        return self.device


class ConfigError(ValueError):
    """Settings the server cannot start with; the message names each variable or flag, its value and the rule."""


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """``GANSAMPLER_*`` variables that are no setting (typos: a limit that silently does not apply), each with the
    closest names."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    problems = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known and name not in CLIENT_ENV:
            close = difflib.get_close_matches(name, sorted(known), n=2, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else f"; settings: {ENV_PREFIX}<field> (docs)"
            problems.append(f"{name} is not a gansampler-server setting{hint}")
    return problems


def load_settings(overrides: Mapping[str, Any] | None = None, flags: Mapping[str, str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment and ``overrides`` (command-line values by field), or a :class:`ConfigError`
    whose lines name the flag (``flags``: field -> flag) or the variable, the value and what is wrong."""
    env = os.environ if environ is None else environ
    problems = unknown_env(env)
    try:
        settings = Settings(**dict(overrides or {}))
    except ValidationError as exc:
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            var = ENV_PREFIX + field.upper()
            if field and overrides and field in overrides:
                where = f"{(flags or {}).get(field, field)} {overrides[field]!r}"
            elif var in env:
                where = f"{var}={env[var]!r}"
            else:
                where = field
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
    if problems:
        raise ConfigError("\n".join(problems))
    return settings
