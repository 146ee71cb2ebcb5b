"""Every error status of docs/api.md maps to its own exception class carrying type, message, param, request id."""

from __future__ import annotations

import gansampler
import httpx
import pytest
from gansampler import (
    APIResponseValidationError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GatewayTimeoutError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)

from .conftest import FakeServer, error_response

STATUS_TABLE = [
    (400, "bad_request", BadRequestError),
    (401, "unauthorized", AuthenticationError),
    (404, "not_found", NotFoundError),
    (409, "conflict", ConflictError),
    (413, "too_large", PayloadTooLargeError),
    (415, "unsupported_media_type", UnsupportedMediaTypeError),
    (422, "invalid_request", UnprocessableEntityError),
    (429, "overloaded", RateLimitError),
    (500, "internal_error", InternalServerError),
    (503, "model_unavailable", ServiceUnavailableError),
    (504, "timeout", GatewayTimeoutError),
]


@pytest.mark.parametrize(("status", "type_", "cls"), STATUS_TABLE)
def test_status_maps_to_exception_with_server_fields(
    client: gansampler.Client, server: FakeServer, status: int, type_: str, cls: type[APIStatusError]
) -> None:
    server.add("GET", "/v1/models/toy", [error_response(status, type_, "it went wrong", "params.step_size")])
    with pytest.raises(cls) as info:
        client.models.get("toy", timeout=1.0)
    err = info.value
    assert type(err) is cls
    assert (err.status_code, err.type, err.message, err.param) == (status, type_, "it went wrong", "params.step_size")
    assert err.request_id == f"req-{status}"
    assert str(err) == f"{status} {type_}: it went wrong (param: params.step_size) [request-id: req-{status}]"
    assert isinstance(err, gansampler.APIError) and isinstance(err, gansampler.GansamplerError)


@pytest.mark.parametrize(
    ("status", "cls"), [(418, APIStatusError), (502, InternalServerError), (507, InternalServerError)]
)
def test_status_without_own_class(
    client: gansampler.Client, server: FakeServer, status: int, cls: type[APIStatusError]
) -> None:
    server.add("GET", "/v1/models", [httpx.Response(status, text="<html>proxy says no</html>")])
    with pytest.raises(cls) as info:
        client.models.list()
    err = info.value
    assert type(err) is cls
    assert err.status_code == status and err.type is None and err.param is None
    assert "proxy says no" in err.message


def test_framework_detail_body_is_kept_in_message(client: gansampler.Client, server: FakeServer) -> None:
    server.add("GET", "/v1/models", [httpx.Response(405, json={"detail": "Method Not Allowed"})])
    with pytest.raises(APIStatusError, match="Method Not Allowed"):
        client.models.list()


def test_unexpected_success_body_raises_validation_error(client: gansampler.Client, server: FakeServer) -> None:
    server.add("GET", "/v1/models/toy", [httpx.Response(200, json={"nope": 1}, headers={"request-id": "r1"})])
    with pytest.raises(APIResponseValidationError, match="not a ModelInfo") as info:
        client.models.get("toy")
    assert info.value.request_id == "r1"


def test_exception_tree_is_documented() -> None:
    doc = gansampler._exceptions.__doc__ or ""
    for name in gansampler._exceptions.__all__:
        if name[0].isupper():
            assert name in doc, f"{name} missing from the exception tree in _exceptions.py"
