"""Errors raised by the gansampler SDK, one class per HTTP error status of ``docs/api.md``.

::

    GansamplerError
    ├── APIError                          message, request
    │   ├── APIConnectionError            the server could not be reached / the connection broke
    │   │   └── APITimeoutError           the client-side timeout elapsed
    │   ├── APIResponseValidationError    a 2xx body that does not match the documented schema
    │   └── APIStatusError                status_code, type, param, request_id, response, body
    │       ├── BadRequestError           400 bad_request
    │       ├── AuthenticationError       401 unauthorized
    │       ├── NotFoundError             404 not_found
    │       ├── ConflictError             409 conflict
    │       ├── PayloadTooLargeError      413 too_large
    │       ├── UnsupportedMediaTypeError 415 unsupported_media_type
    │       ├── UnprocessableEntityError  422 invalid_request
    │       ├── RateLimitError            429 overloaded           (retried, honouring Retry-After)
    │       ├── InternalServerError       500 internal_error, and any other 5xx not below
    │       ├── ServiceUnavailableError   503 model_unavailable    (retried, honouring Retry-After)
    │       └── GatewayTimeoutError       504 timeout
    ├── JobFailedError                    a job ended failed / cancelled / interrupted; carries the Job
    ├── WaitTimeoutError                  a wait gave up (also a TimeoutError): health.wait_ready
    │   └── JobWaitTimeoutError           Job.wait(timeout=...) elapsed first; the job keeps running
    ├── InvalidArgumentError              a value JSON cannot carry (NaN, ±inf), caught before sending (a ValueError)
    └── MissingDependencyError            an optional extra (numpy, Pillow) is needed (also an ImportError)

A status with no class of its own (e.g. 418) raises :class:`APIStatusError`; a 5xx with none raises
:class:`InternalServerError`. ``error.type``, ``error.message`` and ``error.param`` are the server's
``{"error": {...}}`` fields; ``error.request_id`` is the ``request-id`` response header.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from ._models import JobStatus

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "GansamplerError",
    "GatewayTimeoutError",
    "InternalServerError",
    "InvalidArgumentError",
    "JobFailedError",
    "JobWaitTimeoutError",
    "MissingDependencyError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "WaitTimeoutError",
    "status_error_class",
]


class GansamplerError(Exception):
    """Root of every error this package raises on purpose."""


class APIError(GansamplerError):
    """A request to the server failed. ``request`` is the last attempt's :class:`httpx.Request`."""

    def __init__(self, message: str, *, request: httpx.Request | None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APIConnectionError(APIError):
    """No HTTP response: connection refused or reset, DNS failure, protocol error."""

    def __init__(self, message: str = "connection error", *, request: httpx.Request | None) -> None:
        super().__init__(message, request=request)


class APITimeoutError(APIConnectionError):
    """The client-side timeout elapsed before a response came (see ``timeout=``)."""

    def __init__(self, message: str = "request timed out", *, request: httpx.Request | None) -> None:
        super().__init__(message, request=request)


class APIResponseValidationError(APIError):
    """A success response whose body is not what ``docs/api.md`` documents (a server/SDK version mismatch)."""

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message, request=response.request if _has_request(response) else None)
        self.response = response
        self.status_code = response.status_code
        self.request_id: str | None = response.headers.get("request-id")


class APIStatusError(APIError):
    """The server answered with an error status and (normally) an ``{"error": {...}}`` body.

    Attributes: ``status_code`` (int), ``type`` (server error type, e.g. ``"invalid_request"``, or None for a
    body that is not the API's), ``message``, ``param`` (dotted field path or None), ``request_id``,
    ``response`` (:class:`httpx.Response`), ``body`` (decoded JSON or text).
    """

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        type: str | None = None,
        param: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message, request=response.request if _has_request(response) else None)
        self.response = response
        self.status_code = response.status_code
        self.type = type
        self.param = param
        self.body = body
        self.request_id: str | None = response.headers.get("request-id")

    def __str__(self) -> str:
        head = f"{self.status_code} {self.type}" if self.type else f"{self.status_code}"
        text = f"{head}: {self.message}"
        if self.param:
            text += f" (param: {self.param})"
        if self.request_id:
            text += f" [request-id: {self.request_id}]"
        return text


def _has_request(response: httpx.Response) -> bool:
    try:
        response.request  # noqa: B018 - raises RuntimeError when the response was built without one
    except RuntimeError:
        return False
    return True


class BadRequestError(APIStatusError):
    """400 ``bad_request``: the body is not valid JSON."""

    status_code = 400


class AuthenticationError(APIStatusError):
    """401 ``unauthorized``: missing or wrong API key (``api_key=`` / ``$GANSAMPLER_API_KEY``) or admin token."""

    status_code = 401


class NotFoundError(APIStatusError):
    """404 ``not_found``: unknown model, version, sampler or job."""

    status_code = 404


class ConflictError(APIStatusError):
    """409 ``conflict``: a job's result asked for before it succeeded; a version already loaded."""

    status_code = 409


class PayloadTooLargeError(APIStatusError):
    """413 ``too_large``: body over the server's limit, or n × steps over its per-request work limit."""

    status_code = 413


class UnsupportedMediaTypeError(APIStatusError):
    """415 ``unsupported_media_type``: a body that is not JSON."""

    status_code = 415


class UnprocessableEntityError(APIStatusError):
    """422 ``invalid_request``: a field failed validation; ``param`` names it. Never retried."""

    status_code = 422


class RateLimitError(APIStatusError):
    """429 ``overloaded``: the admission queue is full. Retried, honouring ``Retry-After``."""

    status_code = 429


class InternalServerError(APIStatusError):
    """500 ``internal_error`` (a server bug; quote ``request_id``), and any 5xx without its own class."""

    status_code = 500


class ServiceUnavailableError(APIStatusError):
    """503 ``model_unavailable``: the model is loading, unloaded or failed. Retried, honouring ``Retry-After``."""

    status_code = 503


class GatewayTimeoutError(APIStatusError):
    """504 ``timeout``: the request's ``timeout_s`` elapsed on the server (queue time included)."""

    status_code = 504


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    cls.status_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        NotFoundError,
        ConflictError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        UnprocessableEntityError,
        RateLimitError,
        InternalServerError,
        ServiceUnavailableError,
        GatewayTimeoutError,
    )
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The exception class for an HTTP error status (``APIStatusError`` when it has none of its own)."""
    if status_code in _STATUS_CLASSES:
        return _STATUS_CLASSES[status_code]
    return InternalServerError if status_code >= 500 else APIStatusError


class JobFailedError(GansamplerError):
    """A job ended in ``failed``, ``cancelled`` or ``interrupted``; ``job`` is its last status."""

    def __init__(self, job: JobStatus) -> None:
        detail = f": {job.error}" if job.error else ""
        super().__init__(f"job {job.id} ended {job.state}{detail}")
        self.job = job


class WaitTimeoutError(GansamplerError, TimeoutError):
    """A client-side wait (``health.wait_ready``, ``Job.wait``) gave up after ``timeout`` seconds."""

    def __init__(self, message: str, timeout: float) -> None:
        super().__init__(message)
        self.timeout = timeout


class JobWaitTimeoutError(WaitTimeoutError):
    """``Job.wait(timeout=...)`` gave up before the job reached a terminal state; the job keeps running."""

    def __init__(self, job: JobStatus, timeout: float) -> None:
        super().__init__(f"job {job.id} still {job.state} ({job.progress:.0%}) after waiting {timeout:g} s", timeout)
        self.job = job


class InvalidArgumentError(GansamplerError, ValueError):
    """An argument the request cannot carry, found before anything is sent; ``param`` is its dotted path in the
    request body (e.g. ``params.step_size``), as the server's 422 would name it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


class MissingDependencyError(GansamplerError, ImportError):
    """An optional dependency is needed: ``pip install 'gansampler[images]'`` brings numpy and Pillow."""

    def __init__(self, package: str, feature: str) -> None:
        super().__init__(f"{feature} needs the optional package {package!r}: pip install 'gansampler[images]'")
        self.package = package
