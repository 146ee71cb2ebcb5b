"""Server settings: pydantic-settings, environment prefix ``GANSAMPLER_``.

Every default is a named constant below; docs and errors quote them from here. Limits apply per request unless
stated; jobs have their own, larger ones. Examples::

    GANSAMPLER_MODELS_DIR=models GANSAMPLER_DEVICE=cuda:0,cuda:1 GANSAMPLER_MAX_N=256 gansampler-server serve
    GANSAMPLER_API_KEYS=key1,key2 GANSAMPLER_ADMIN_TOKEN=secret ...
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "GANSAMPLER_"
# The SDK's and CLI's own variables (clients/python/gansampler/_constants.py ENV_*), not the server's: allowed in the
# server's environment, where a shell or an env file may hold both. Keep in step with the SDK (a test checks).
ENV_API_KEY = "GANSAMPLER_API_KEY"
CLIENT_ENV = frozenset({"GANSAMPLER_URL", ENV_API_KEY})
# serve's flags for the settings they set (field -> flag), so errors name the flag a value came from
SERVE_FLAGS = {"models_dir": "--models", "host": "--host", "port": "--port", "device": "--device",
               "data_dir": "--data-dir", "torch_threads": "--torch-threads"}

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
DEFAULT_JOB_MAX_ATTEMPTS = 3  # starts of a job before a server that died while running it gives it up
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
    job_max_attempts: int = Field(
        default=DEFAULT_JOB_MAX_ATTEMPTS, ge=1,
        description="how many times a job is started when the server dies while running it (a crash, a kill): the "
        "next start runs it again from its start until it was started this many times, then it ends interrupted. "
        "A graceful shutdown queues running jobs again without counting. 1: never run again after a crash",
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
                raise ValueError("lists no key, only commas and blanks: give at least one key, or leave it empty to "
                                 "serve without authentication")
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
        found = contradictions(self)
        if found:
            raise LimitsContradict(found)
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

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """:func:`load_settings` reads the environment it is given (tests pass a dict) instead of ``os.environ``."""
        environ = _ENVIRON.get()
        if environ is not None:
            env_settings = _MappingEnvSource(settings_cls, environ)
        return init_settings, env_settings, dotenv_settings, file_secret_settings


class ConfigError(ValueError):
    """Settings the server cannot start with; the message names each variable or flag, its value and the rule."""


class Contradiction(NamedTuple):
    """Two settings whose values rule each other out: ``low`` must be <= ``high``; ``why`` says what would break."""

    low: str
    high: str
    why: str
    low_value: object
    high_value: object


def contradictions(s: Settings) -> list[Contradiction]:
    """Pairs of limits that contradict each other (a request within one can never pass the other), not matters of
    taste: jobs' limits below the requests' ones are allowed (jobs are a separate route with their own limits)."""
    found = []
    if s.default_timeout_s > s.max_timeout_s:
        found.append(Contradiction("default_timeout_s", "max_timeout_s",
                                   "requests without timeout_s would run past the maximum",
                                   s.default_timeout_s, s.max_timeout_s))
    if s.max_chain_steps > s.max_queue_chain_steps:
        found.append(Contradiction("max_chain_steps", "max_queue_chain_steps",
                                   "a request within max_chain_steps could never be admitted",
                                   s.max_chain_steps, s.max_queue_chain_steps))
    return found


class LimitsContradict(ValueError):
    def __init__(self, found: list[Contradiction]) -> None:
        super().__init__("; ".join(f"{c.low} must be <= {c.high} ({c.why})" for c in found))
        self.found = found


_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("gansampler_settings_environ", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ`` (same parsing)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        if self.case_sensitive:
            return dict(self._environ)
        return {k.lower(): v for k, v in self._environ.items()}


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """``GANSAMPLER_*`` variables that are no setting (typos: a limit that silently does not apply), each with the
    closest names. An error, not a warning: the prefix is the server's, so an unknown name is a typo or a renamed
    setting; the SDK's and CLI's own variables (:data:`CLIENT_ENV`) are allowed, a shell may hold both."""
    fields = sorted(name.upper() for name in Settings.model_fields)
    problems = []
    for name in sorted(environ):
        upper = name.upper()  # pydantic-settings reads names case-insensitively
        if upper.startswith(ENV_PREFIX) and upper.removeprefix(ENV_PREFIX) not in fields and upper not in CLIENT_ENV:
            close = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), fields, n=2, cutoff=0.6)
            hint = f"; did you mean {' or '.join(ENV_PREFIX + c for c in close)}?" if close else \
                "; the settings are GANSAMPLER_<field> for each field of service/config.py (README: Operating it)"
            problems.append(f"{name} is not a gansampler-server setting{hint}")
    return problems


def data_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) the data dir, from a look at the file system (nothing is created);
    None when it looks usable. Serve's lock on the data dir still reports what only creating it shows."""
    path = path.absolute()
    if path.exists():
        if not path.is_dir():
            return "is not a directory"
        return None if os.access(path, os.W_OK | os.X_OK) else "is not writable"
    parent = next(p for p in path.parents if p.exists())  # the root always exists
    if not parent.is_dir():
        return f"cannot be created: {parent} is not a directory"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"cannot be created: {parent} is not writable"


# pydantic's error types -> the rule in a few words (the bound from the error's context)
_RULES: dict[str, str] = {
    "greater_than_equal": "must be >= {ge}", "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}", "less_than": "must be < {lt}",
    "int_parsing": "must be an integer", "int_from_float": "must be an integer", "int_type": "must be an integer",
    "float_parsing": "must be a number", "float_type": "must be a number",
    "bool_parsing": "must be true or false (or 1/0, yes/no, on/off)", "bool_type": "must be true or false",
}


def _rule(err: Mapping[str, Any]) -> str:
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind in _RULES:
        try:
            return _RULES[kind].format(**{k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()})
        except (KeyError, IndexError):
            pass
    if kind == "value_error" and ctx.get("error") is not None:
        return str(ctx["error"])
    return str(err.get("msg", "invalid"))


def _shown(value: object) -> str:
    text = str(value)
    return text if text and text.isprintable() and not any(c.isspace() for c in text) else repr(text)


def load_settings(overrides: Mapping[str, Any] | None = None, flags: Mapping[str, str] | None = None, *,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``environ`` (default ``os.environ``) and ``overrides`` (command-line values by field, which win),
    or a :class:`ConfigError` with one line per problem naming the flag (``flags``: field -> flag, default serve's
    :data:`SERVE_FLAGS`) or the ``GANSAMPLER_*`` variable, the value and the rule: bad values, unknown variables,
    limits that contradict each other, an unusable data dir."""
    env = os.environ if environ is None else environ
    over = dict(overrides or {})
    flag_of = SERVE_FLAGS if flags is None else flags
    as_set = {k.upper(): k for k in env}  # the name as the environment spells it

    def named(field: str, value: object = None, *, resolved: bool = False) -> str:
        """``--flag value`` or ``GANSAMPLER_X=value``; a value from neither is the default (``resolved``: shown)."""
        var = ENV_PREFIX + field.upper()
        if field in over:
            return f"{flag_of.get(field, field)} {_shown(over[field])}"
        if var in as_set:
            return f"{as_set[var]}={_shown(env[as_set[var]])}"
        return f"{var}={_shown(f'{value:g}' if isinstance(value, float) else value)} (default)" if resolved else var

    problems = unknown_env(env)
    if ENV_API_KEY in as_set and ENV_PREFIX + "API_KEYS" not in as_set:  # one letter from the server's setting
        logging.getLogger(__name__).warning(
            "%s is the SDK's and CLI's key, not the server's: this server's keys are %sAPI_KEYS (unset: no auth)",
            as_set[ENV_API_KEY], ENV_PREFIX)
    token = _ENVIRON.set(env)
    settings = None
    try:
        settings = Settings(**over)
    except ValidationError as exc:
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            error = (err.get("ctx") or {}).get("error")
            if isinstance(error, LimitsContradict):
                for c in error.found:
                    low, high = named(c.low, c.low_value, resolved=True), named(c.high, c.high_value, resolved=True)
                    if low.endswith("(default)"):  # name the one that was set first
                        problems.append(f"{high} must be >= {low}: {c.why}")
                    else:
                        problems.append(f"{low} must be <= {high}: {c.why}")
            elif err["type"] == "extra_forbidden":
                problems.append(f"{field!r} is not a setting (known: {', '.join(Settings.model_fields)})")
            elif field:
                problems.append(f"{named(field)}: {_rule(err)}")
            else:
                problems.append(_rule(err))
    finally:
        _ENVIRON.reset(token)
    # checked even when other settings failed (from the flag, variable or default), so one run reports every problem
    data_dir = settings.data_dir if settings is not None else over.get("data_dir", env.get(
        as_set.get(ENV_PREFIX + "DATA_DIR", ""), DEFAULT_DATA_DIR))
    if isinstance(data_dir, (str, Path)) and str(data_dir) and (why := data_dir_problem(Path(data_dir))):
        problems.append(f"{named('data_dir')}: data dir {why}")
    if problems:
        raise ConfigError("\n".join(problems))
    assert settings is not None
    return settings
