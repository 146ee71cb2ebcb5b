"""Every error the engine raises has its own row in the error table: a class missing from it answers 500."""

from __future__ import annotations

import inspect
import json

from service.api.errors import ERROR_TABLE, INTERNAL, error_response, lookup
from service.engine import errors as engine_errors


def engine_error_classes() -> list[type[BaseException]]:
    return [
        c for _, c in inspect.getmembers(engine_errors, inspect.isclass)
        if issubclass(c, engine_errors.EngineError) and c is not engine_errors.EngineError
    ]


def test_every_engine_error_has_a_row() -> None:
    missing = [c.__name__ for c in engine_error_classes() if c not in ERROR_TABLE]
    assert missing == []
    # the one engine error that is the server's fault
    assert [c.__name__ for c in engine_error_classes() if ERROR_TABLE[c] == INTERNAL] == ["ModelFailed"]


def test_a_request_larger_than_the_queue_is_413_naming_the_limit_without_retry_after() -> None:
    exc = engine_errors.TooLargeToAdmit(2_000_000, 1_000_000)
    assert lookup(exc) == (413, "too_large")
    response = error_response(exc)
    body = json.loads(bytes(response.body))["error"]
    assert response.status_code == 413 and "retry-after" not in response.headers
    assert body["param"] == "steps" and "max_queue_chain_steps=1000000" in body["message"]
    assert "2000000 chain-steps" in body["message"]
