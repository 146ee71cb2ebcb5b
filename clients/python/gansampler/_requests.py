"""Pure builders: SDK method arguments → :class:`RequestSpec`, one per API route of ``docs/api.md``.

Shared by the sync and async resources so both send byte-identical requests. NOT_GIVEN fields are left out of the
body (the server applies its defaults); None is sent as JSON null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

import httpx

from ._base_client import RequestSpec, TimeoutArg, drop_not_given, timeout_for_server_deadline, to_timeout
from ._types import NOT_GIVEN, NotGivenOr, is_given

OutputFormat = Literal["png", "array"]
DiagnosticsLevel = Literal["none", "summary", "chains", "traces"]
NPZ_MEDIA_TYPE = "application/x-npz"


def _segment(value: str) -> str:
    """A path segment, percent-encoded (model refs like ``name@3`` keep their ``@``)."""
    return quote(value, safe="@")


def sampling_body(
    model: str,
    *,
    n: int,
    seed: NotGivenOr[int | None] = NOT_GIVEN,
    steps: NotGivenOr[int | None] = NOT_GIVEN,
    params: NotGivenOr[Mapping[str, float] | None] = NOT_GIVEN,
    options: NotGivenOr[Mapping[str, Any] | None] = NOT_GIVEN,
    output: NotGivenOr[OutputFormat | None] = NOT_GIVEN,
    diagnostics: NotGivenOr[DiagnosticsLevel | None] = NOT_GIVEN,
    timeout_s: NotGivenOr[float | None] = NOT_GIVEN,
) -> dict[str, Any]:
    """The JSON body of a sampling request (sampler excluded: it goes in the path, or in the job body)."""
    return drop_not_given(
        {
            "model": model,
            "n": n,
            "seed": seed,
            "steps": steps,
            "params": dict(params) if params else params,
            "options": dict(options) if options else options,
            "output": output,
            "diagnostics": diagnostics,
            "timeout_s": timeout_s,
        }
    )


def _request_timeout(
    client_timeout: httpx.Timeout, timeout: NotGivenOr[TimeoutArg], timeout_s: NotGivenOr[float | None]
) -> NotGivenOr[TimeoutArg]:
    """An explicit ``timeout`` wins; otherwise the client's, stretched to cover the server's ``timeout_s``."""
    if is_given(timeout):
        return timeout
    stretched = timeout_for_server_deadline(client_timeout, timeout_s)
    return NOT_GIVEN if stretched is client_timeout else stretched


def create_samples(
    client_timeout: httpx.Timeout,
    sampler: str,
    body: dict[str, Any],
    *,
    npz: bool = False,
    timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
    max_retries: NotGivenOr[int] = NOT_GIVEN,
) -> RequestSpec:
    """``POST /v1/samples/{sampler}``. Idempotent: sampling has no side effects, so it is safe to retry."""
    return RequestSpec(
        "POST",
        f"/v1/samples/{_segment(sampler)}",
        body=body,
        headers={"accept": NPZ_MEDIA_TYPE} if npz else {},
        timeout=_request_timeout(client_timeout, timeout, body.get("timeout_s", NOT_GIVEN)),
        max_retries=max_retries,
        idempotent=True,
    )


def livez(*, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> RequestSpec:
    """``GET /livez``."""
    return RequestSpec("GET", "/livez", timeout=timeout)


def readyz(*, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN, max_retries: NotGivenOr[int] = NOT_GIVEN) -> RequestSpec:
    """``GET /readyz``: 200 or 503, both with a Readiness body (a 503 here is an answer, not an error)."""
    return RequestSpec("GET", "/readyz", timeout=timeout, max_retries=max_retries, ok_statuses=frozenset({503}))


def list_models(*, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> RequestSpec:
    """``GET /v1/models``."""
    return RequestSpec("GET", "/v1/models", timeout=timeout)


def get_limits(*, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> RequestSpec:
    """``GET /v1/limits``."""
    return RequestSpec("GET", "/v1/limits", timeout=timeout)


def get_model(name: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> RequestSpec:
    """``GET /v1/models/{name}`` (``name`` or ``name@version``)."""
    return RequestSpec("GET", f"/v1/models/{_segment(name)}", timeout=timeout)


def create_job(
    sampler: str,
    body: dict[str, Any],
    *,
    timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
    max_retries: NotGivenOr[int] = NOT_GIVEN,
) -> RequestSpec:
    """``POST /v1/jobs``. Not idempotent: a retry after the server got it would start a second job."""
    return RequestSpec(
        "POST",
        "/v1/jobs",
        body={"sampler": sampler, **body},
        timeout=timeout,
        max_retries=max_retries,
        idempotent=False,
    )


def list_jobs(
    state: str | Sequence[str] | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    *,
    timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
) -> RequestSpec:
    """``GET /v1/jobs``: one page, newest first; ``state`` one state or several (sent as a comma list)."""
    params: dict[str, str] = {}
    if state is not None:
        params["state"] = state if isinstance(state, str) else ",".join(state)
    if limit is not None:
        params["limit"] = str(limit)
    if cursor is not None:
        params["cursor"] = cursor
    return RequestSpec("GET", "/v1/jobs", params=params or None, timeout=timeout)


def get_job(job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> RequestSpec:
    """``GET /v1/jobs/{id}``."""
    return RequestSpec("GET", f"/v1/jobs/{_segment(job_id)}", timeout=timeout)


def job_result(job_id: str, *, npz: bool = False, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> RequestSpec:
    """``GET /v1/jobs/{id}/result`` (409 until the job succeeded), as JSON or ``.npz``."""
    headers = {"accept": NPZ_MEDIA_TYPE} if npz else {}
    return RequestSpec("GET", f"/v1/jobs/{_segment(job_id)}/result", headers=headers, timeout=timeout)


def cancel_job(job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> RequestSpec:
    """``DELETE /v1/jobs/{id}``: cancels a running job, deletes a finished one, so never retried blindly."""
    return RequestSpec("DELETE", f"/v1/jobs/{_segment(job_id)}", timeout=timeout, idempotent=False)


def job_events(job_id: str, *, timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN) -> RequestSpec:
    """``GET /v1/jobs/{id}/events`` as a stream; with no read timeout by default (progress may be sparse)."""
    if not is_given(timeout):
        timeout = httpx.Timeout(None, connect=to_timeout(10.0).connect)
    return RequestSpec(
        "GET",
        f"/v1/jobs/{_segment(job_id)}/events",
        headers={"accept": "text/event-stream"},
        timeout=timeout,
        stream=True,
    )
