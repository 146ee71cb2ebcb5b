"""Errors -> HTTP, in ONE table.

The API's own errors (raised at the edge)::

    ApiError
    ├── BadRequest            400 bad_request             malformed JSON
    ├── Unauthorized          401 unauthorized
    ├── NotFound              404 not_found               unknown sampler, job, route
    ├── NotAcceptable         406 not_acceptable          Accept allows neither JSON nor npz
    ├── Conflict              409 conflict                job not finished, version already loaded
    ├── TooLarge              413 too_large               body or n × steps over the limit
    ├── UnsupportedMediaType  415 unsupported_media_type
    ├── InvalidRequest        422 invalid_request         a field out of its limits
    └── ModelUnavailable      503 model_unavailable       exists but not loaded / failed / loading

Errors raised below the edge (samplers, registry, engine, jobs) keep their own hierarchies; :data:`ERROR_TABLE` maps
each class to (status, type), looked up along the exception's MRO. A class missing from it answers 500, so every
engine error has a row (``tests/api/test_error_table.py``). Every body is
``{"error": {"type", "message", "param"}}`` (docs/api.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.config import DEFAULT_RETRY_AFTER_S
from service.engine import errors as engine_errors
from service.engine.jobs import JobNotFinished, JobNotFound
from service.registry import errors as registry_errors
from service.samplers.base import SamplerParamError, UnsupportedPairError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, message: str, param: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after


class BadRequest(ApiError): ...


class Unauthorized(ApiError): ...


class NotFound(ApiError): ...


class NotAcceptable(ApiError): ...


class Conflict(ApiError): ...


class TooLarge(ApiError): ...


class UnsupportedMediaType(ApiError): ...


class InvalidRequest(ApiError): ...


class ModelUnavailable(ApiError): ...


ERROR_TABLE: dict[type[BaseException], tuple[int, str]] = {
    BadRequest: (400, "bad_request"),
    Unauthorized: (401, "unauthorized"),
    NotFound: (404, "not_found"),
    NotAcceptable: (406, "not_acceptable"),
    Conflict: (409, "conflict"),
    TooLarge: (413, "too_large"),
    UnsupportedMediaType: (415, "unsupported_media_type"),
    InvalidRequest: (422, "invalid_request"),
    ModelUnavailable: (503, "model_unavailable"),
    SamplerParamError: (422, "invalid_request"),
    UnsupportedPairError: (422, "invalid_request"),
    JobNotFound: (404, "not_found"),
    JobNotFinished: (409, "conflict"),
    engine_errors.TooLargeToAdmit: (413, "too_large"),
    engine_errors.Overloaded: (429, "overloaded"),
    engine_errors.Cancelled: (499, "cancelled"),
    engine_errors.ModelFailed: (500, "internal_error"),
    engine_errors.EngineStopped: (503, "model_unavailable"),
    engine_errors.DeadlineExceeded: (504, "timeout"),
    registry_errors.ModelNotFoundError: (404, "not_found"),
    registry_errors.ModelNotReadyError: (503, "model_unavailable"),
    registry_errors.RegistryError: (422, "invalid_request"),  # a version that cannot load (admin load/reload)
}

INTERNAL = (500, "internal_error")

# The request field an error is about, when the exception does not carry ``param`` itself.
ERROR_PARAMS: dict[type[BaseException], str] = {
    UnsupportedPairError: "sampler",
    engine_errors.DeadlineExceeded: "timeout_s",
    registry_errors.ModelNotFoundError: "model",
    registry_errors.ModelNotReadyError: "model",
}


def lookup(exc: BaseException) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return INTERNAL


def error_body(type_: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, "param": param}}


def error_response(exc: BaseException, request_id: str | None = None) -> JSONResponse:
    """The JSON response for any exception, by the table."""
    status, type_ = lookup(exc)
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    # a model that failed to load, or that an operator unloaded, stays so until an operator acts: retrying soon
    # cannot help (a model still loading can)
    settled = getattr(exc, "entry_state", None) in ("failed", "unloaded")
    if retry_after is None and status in (429, 503) and not settled:
        retry_after = DEFAULT_RETRY_AFTER_S
    if retry_after is not None:
        headers["Retry-After"] = str(int(retry_after))
    if (status, type_) == INTERNAL and not isinstance(exc, engine_errors.ModelFailed):
        message = f"internal error (request-id {request_id})"
    elif isinstance(exc, (ApiError, JobNotFound, JobNotFinished)):
        message = exc.message
    else:
        message = str(exc)
    param = getattr(exc, "param", None) or next((ERROR_PARAMS[c] for c in type(exc).__mro__ if c in ERROR_PARAMS), None)
    return JSONResponse(error_body(type_, message, param), status_code=status, headers=headers)


def _loc_to_param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def _nesting_hint(param: str | None) -> str:
    """For a top-level field that is a sampler's param or option name: where it belongs (``params`` / ``options``)."""
    import dataclasses

    from service.samplers import SAMPLERS

    if param is None or "." in param:
        return ""
    if param == "sampler":
        return "; the sampler is part of the path: POST /v1/samples/{sampler} (only job bodies name it)"
    as_param = [n for n, e in SAMPLERS.items() if any(spec.name == param for spec in e.cls.param_specs)]
    if as_param:
        return f"; {param} is a parameter of {', '.join(as_param)}: send it as \"params\": {{\"{param}\": ...}}"
    as_option = [n for n, e in SAMPLERS.items() if any(f.name == param for f in dataclasses.fields(e.options_cls))]
    if as_option:
        return f"; {param} is an option of {', '.join(as_option)}: send it as \"options\": {{\"{param}\": ...}}"
    return ""


def _json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words, with the value shortened."""
    if value is None:
        return "null"
    kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)
    text = json.dumps(value, default=str)
    return f"{kind}: {text if len(text) <= 60 else text[:60] + '...'}"


def validation_error(exc: RequestValidationError) -> ApiError:
    """The first pydantic error as an ApiError naming the field, the value and the constraint."""
    errs = exc.errors()
    if not errs:
        return InvalidRequest("invalid request")
    e = errs[0]
    kind = e.get("type", "")
    if kind == "json_invalid":
        return BadRequest(f"malformed JSON body: {e.get('ctx', {}).get('error', e.get('msg'))}")
    loc = tuple(e.get("loc", ()))
    param = _loc_to_param(loc)
    if param is None and loc[:1] == ("body",):  # the body as a whole: absent, or not a JSON object
        if kind == "missing":
            return BadRequest("request body is required: a JSON object (see /docs for the fields)")
        return BadRequest(f"request body must be a JSON object, got {_json_kind(e.get('input'))}")
    if kind == "extra_forbidden":
        return InvalidRequest(f"unknown field {param!r}{_nesting_hint(param)}", param)
    if kind == "missing":
        return InvalidRequest(f"{param} is required", param)
    if kind == "value_error":
        err = e.get("ctx", {}).get("error")
        return InvalidRequest(str(err if err is not None else e.get("msg")), getattr(err, "param", None) or param)
    value = e.get("input")
    return InvalidRequest(f"{param}: {e.get('msg')}, got {value!r}", param)


def _allowed_methods(request: Request) -> str | None:
    """Every method some route serves on this path (the router names only the first route that matched), with
    HEAD beside GET (the middleware answers HEAD on every GET route)."""
    from starlette.routing import Match

    def flat(routes: list[Any]) -> Iterator[Any]:
        for route in routes:
            inner = getattr(route, "original_router", None)  # newer FastAPI wraps an included router
            yield from flat(inner.routes) if inner is not None else (route,)

    methods: set[str] = set()
    for route in flat(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods)) or None


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the error body."""

    def _rid(request: Request) -> str | None:
        return getattr(request.state, "request_id", None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc), _rid(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        method = request.scope.get("state", {}).get("method", request.method)  # HEAD runs as GET
        if exc.status_code == 404:
            return error_response(NotFound(f"no route {method} {request.url.path}"), _rid(request))
        if exc.status_code == 405:
            body = error_body("method_not_allowed", f"method {method} not allowed on {request.url.path}")
            allow = _allowed_methods(request) or (exc.headers or {}).get("Allow")
            return JSONResponse(body, status_code=405, headers={"Allow": allow} if allow else None)
        detail = str(exc.detail)
        if exc.status_code == 400 and detail == "There was an error parsing the body":  # undecodable bytes
            detail = ("malformed body: not UTF-8 JSON (send application/json text; content-encoding such as gzip "
                      "is not supported)")
        return JSONResponse(error_body("bad_request", detail), status_code=exc.status_code)

    async def _table(request: Request, exc: Exception) -> JSONResponse:
        status, _ = lookup(exc)
        if status == 500:
            log.error("request %s failed: %s", _rid(request), exc, exc_info=exc)
        return error_response(exc, _rid(request))

    for cls in list(ERROR_TABLE):
        app.add_exception_handler(cls, _table)  # type: ignore[arg-type]
