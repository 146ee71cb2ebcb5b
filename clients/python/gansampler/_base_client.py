"""The pure half shared by :class:`~gansampler.Client` and :class:`~gansampler.AsyncClient`.

Request building, the retry policy (which failures, how long to wait), error mapping and response parsing live here
and do no I/O; the two clients only send, sleep and loop. Retry policy:

- every request is retried on connection failures that happened before it was sent (connect error/timeout,
  pool timeout), on 429 and on 503;
- idempotent requests (GET, and sampling, which has no side effects) are also retried after a broken exchange
  (read/write error, protocol error) and on 502 (a proxy's); creating or cancelling a job never is;
- a client-side read/write timeout is retried for GETs only: a sampling request that outlived the client's timeout
  is computing, and sending it again would start the same work a second time;
- 504 (the request's own ``timeout_s`` elapsed on the server) and any other 4xx/5xx (e.g. 422, 500) never are;
- the wait is the server's ``Retry-After`` (seconds or HTTP date) when given, capped at ``MAX_RETRY_AFTER_S``,
  otherwise ``min(INITIAL_RETRY_DELAY_S * 2**retry, MAX_RETRY_DELAY_S)`` times a jitter factor in
  ``[1 - RETRY_JITTER, 1]``.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pydantic

from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    ENV_API_KEY,
    ENV_BASE_URL,
    INITIAL_RETRY_DELAY_S,
    MAX_RETRY_AFTER_S,
    MAX_RETRY_DELAY_S,
    RETRY_JITTER,
    RETRY_STATUSES_ANY,
    RETRY_STATUSES_IDEMPOTENT,
    TIMEOUT_MARGIN_S,
    __version__,
)
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    InvalidArgumentError,
    status_error_class,
)
from ._types import NOT_GIVEN, NotGiven, NotGivenOr, is_given

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)

TimeoutArg = float | httpx.Timeout | None
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Transport errors raised before any byte of the request reached the server: safe to retry for any method.
_NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RequestSpec:
    """One logical API call, before it becomes an :class:`httpx.Request` (re-built for every attempt).

    ``body``: JSON body, NOT_GIVEN for none. ``timeout``: NOT_GIVEN → the client's; None → no timeout.
    ``idempotent``: None → decided by the method (``IDEMPOTENT_METHODS``). ``ok_statuses``: error statuses that
    are answers, not errors (``/readyz`` says 503 with a body), returned without raising or retrying.
    """

    method: str
    path: str
    body: Any = NOT_GIVEN
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN
    max_retries: NotGivenOr[int] = NOT_GIVEN
    idempotent: bool | None = None
    stream: bool = False
    ok_statuses: frozenset[int] = frozenset()

    @property
    def is_idempotent(self) -> bool:
        return self.idempotent if self.idempotent is not None else self.method.upper() in IDEMPOTENT_METHODS


# --- request building -------------------------------------------------------------------------------------------


def drop_not_given(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``fields`` whose value is not NOT_GIVEN (None is kept: it is sent as JSON null)."""
    return {key: value for key, value in fields.items() if is_given(value)}


def to_timeout(value: TimeoutArg) -> httpx.Timeout:
    """A number of seconds (connect capped at ``DEFAULT_CONNECT_TIMEOUT_S``), an httpx.Timeout, or None (none)."""
    if isinstance(value, httpx.Timeout):
        return value
    if value is None:
        return httpx.Timeout(None)
    return httpx.Timeout(float(value), connect=min(float(value), DEFAULT_CONNECT_TIMEOUT_S))


def timeout_for_server_deadline(default: httpx.Timeout, timeout_s: NotGivenOr[float | None]) -> httpx.Timeout:
    """Stretch the read timeout so the client waits for the server's own ``timeout_s`` (+ ``TIMEOUT_MARGIN_S``)."""
    if not is_given(timeout_s) or timeout_s is None or default.read is None:
        return default
    needed = float(timeout_s) + TIMEOUT_MARGIN_S  # type: ignore[arg-type]
    if default.read >= needed:
        return default
    return httpx.Timeout(default.connect, read=needed, write=default.write, pool=default.pool)


# --- retry policy -----------------------------------------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str] | httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP date), or None if absent/invalid.

    A date in the past gives 0. ``now`` (aware datetime) defaults to the current UTC time.
    """
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
        return max(seconds, 0.0)
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds


def backoff_delay(retry: int, rand: float) -> float:
    """Exponential backoff for the ``retry``-th retry (0-based) with jitter; ``rand`` uniform in [0, 1)."""
    base = min(INITIAL_RETRY_DELAY_S * 2.0**retry, MAX_RETRY_DELAY_S)
    return base * (1.0 - RETRY_JITTER * rand)


def check_json_finite(value: Any, path: str = "") -> None:
    """Raise :class:`InvalidArgumentError` at the first float in ``value`` that JSON cannot carry (NaN, ±inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgumentError(path, f"{path or 'body'} must be a finite number, got {value!r}")
    if isinstance(value, dict):
        for key, item in value.items():
            check_json_finite(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_json_finite(item, f"{path}[{index}]")


def retry_delay(
    retry: int, headers: Mapping[str, str] | httpx.Headers | None, *, rand: float, now: datetime | None = None
) -> float:
    """Seconds to wait before the ``retry``-th retry: the server's Retry-After (capped) or the backoff."""
    if headers is not None:
        retry_after = parse_retry_after(headers, now)
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
    return backoff_delay(retry, rand)


def should_retry_status(status_code: int, idempotent: bool) -> bool:
    """429/503 always; 502 only for idempotent requests; nothing else (never 422, 500 or 504)."""
    return status_code in RETRY_STATUSES_ANY or (idempotent and status_code in RETRY_STATUSES_IDEMPOTENT)


def should_retry_exception(exc: httpx.TransportError, idempotent: bool, method: str) -> bool:
    """Errors before sending: always; a timed-out exchange: GETs only; another broken exchange: when idempotent."""
    if isinstance(exc, _NOT_SENT_ERRORS):
        return True
    if isinstance(exc, httpx.TimeoutException):
        return idempotent and method.upper() in IDEMPOTENT_METHODS
    return idempotent


# --- error mapping and parsing ----------------------------------------------------------------------------------


def make_status_error(response: httpx.Response) -> APIStatusError:
    """The typed exception for an error response (already read), from its ``{"error": {...}}`` body."""
    body: Any
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = response.text
    error_type: str | None = None
    param: str | None = None
    message = response.reason_phrase or "error"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        error_type = error.get("type") if isinstance(error.get("type"), str) else None
        message = str(error.get("message") or message)
        param = error.get("param") if isinstance(error.get("param"), str) else None
    elif isinstance(body, dict) and "detail" in body:  # a framework default error that escaped the API's handlers
        message = json.dumps(body["detail"]) if not isinstance(body["detail"], str) else body["detail"]
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:500]
    cls = status_error_class(response.status_code)
    return cls(message, response=response, type=error_type, param=param, body=body)


def make_transport_error(exc: httpx.TransportError, request: httpx.Request | None) -> APIError:
    """``APITimeoutError`` for any httpx timeout, else ``APIConnectionError``; the message names the cause."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"request timed out ({type(exc).__name__}: {detail})", request=request)
    return APIConnectionError(f"connection error ({type(exc).__name__}: {detail})", request=request)


def parse_model(model: type[ModelT], response: httpx.Response) -> ModelT:
    """A success response's JSON body validated as ``model``; APIResponseValidationError when it is not."""
    try:
        return model.model_validate(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError, pydantic.ValidationError) as exc:
        raise APIResponseValidationError(
            f"{response.request.method} {response.request.url.path} returned a body that is not a "
            f"{model.__name__}: {exc}",
            response=response,
        ) from exc


# --- configuration ----------------------------------------------------------------------------------------------


def resolve_base_url(base_url: str | None) -> str:
    """``base_url``, else ``$GANSAMPLER_URL``, else ``DEFAULT_BASE_URL``; without a trailing slash."""
    url = base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


class BaseClient:
    """Configuration and pure request building shared by the sync and async clients.

    Args:
        base_url: server root, e.g. ``"http://127.0.0.1:8000"``; default ``$GANSAMPLER_URL`` or
            ``DEFAULT_BASE_URL``.
        api_key: sent as ``Authorization: Bearer <key>``; default ``$GANSAMPLER_API_KEY``; ``""`` sends none.
        timeout: seconds per attempt (``DEFAULT_TIMEOUT_S``), an ``httpx.Timeout``, or None for no limit.
        max_retries: retries after the first attempt (``DEFAULT_MAX_RETRIES``); 0 disables retrying.
        default_headers: extra headers sent with every request.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: TimeoutArg = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.base_url = resolve_base_url(base_url)
        self.api_key = api_key if api_key is not None else os.environ.get(ENV_API_KEY)
        self.timeout = to_timeout(timeout)
        self.max_retries = max_retries
        self.default_headers = dict(default_headers or {})
        # Injection points for tests: the jitter source and the wall clock used for Retry-After dates.
        self._random: Callable[[], float] = random.random
        self._now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, max_retries={self.max_retries})"

    def build_headers(self, spec: RequestSpec) -> dict[str, str]:
        headers = {"accept": "application/json", "user-agent": f"gansampler-python/{__version__}"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        headers.update(self.default_headers)
        headers.update(spec.headers)
        return headers

    def build_request(self, spec: RequestSpec) -> httpx.Request:
        """The :class:`httpx.Request` for one attempt of ``spec`` (timeout carried in its extensions).

        Raises :class:`InvalidArgumentError` for a body value JSON cannot carry (NaN, ±inf), naming its path."""
        if is_given(spec.body):
            check_json_finite(spec.body)
        timeout = self.timeout if not is_given(spec.timeout) else to_timeout(spec.timeout)  # type: ignore[arg-type]
        return httpx.Request(
            spec.method,
            self.base_url + spec.path,
            params=spec.params,
            headers=self.build_headers(spec),
            json=spec.body if is_given(spec.body) else None,
            extensions={"timeout": timeout.as_dict()},
        )

    def retries_for(self, spec: RequestSpec) -> int:
        return spec.max_retries if is_given(spec.max_retries) else self.max_retries  # type: ignore[return-value]

    def next_delay(self, retry: int, headers: httpx.Headers | None) -> float:
        """Seconds before the ``retry``-th retry (0-based), from Retry-After or jittered backoff."""
        return retry_delay(retry, headers, rand=self._random(), now=self._now())


__all__ = [
    "NOT_GIVEN",
    "BaseClient",
    "NotGiven",
    "RequestSpec",
    "backoff_delay",
    "drop_not_given",
    "make_status_error",
    "parse_retry_after",
    "retry_delay",
    "should_retry_exception",
    "should_retry_status",
]
