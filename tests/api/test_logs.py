"""The access log line carries the request id that error bodies and the SDK quote; probes and scrapes stay quiet."""

from __future__ import annotations

import logging
import logging.config

import httpx
import pytest

from service.api.deps import Services
from service.api.logs import ACCESS_LOGGER, log_config

Api = tuple[httpx.AsyncClient, Services]


async def test_each_request_logs_one_access_line_with_its_request_id(api: Api,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    client, _ = api
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        r = await client.post("/v1/samples/mh", json={"model": "nope", "n": 1}, headers={"request-id": "abc-123"})
        await client.get("/readyz")
        await client.get("/metrics")
    assert r.status_code == 404
    lines = [rec.getMessage() for rec in caplog.records if rec.name == ACCESS_LOGGER]
    assert len(lines) == 1, lines
    assert lines[0].startswith("POST /v1/samples/mh 404 ") and lines[0].endswith("request-id=abc-123")


async def test_probes_and_scrapes_log_at_debug(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    client, _ = api
    with caplog.at_level(logging.DEBUG, logger=ACCESS_LOGGER):
        await client.get("/readyz")
        await client.head("/livez")
    levels = [(rec.levelno, rec.getMessage().split()[:2]) for rec in caplog.records if rec.name == ACCESS_LOGGER]
    assert levels == [(logging.DEBUG, ["GET", "/readyz"]), (logging.DEBUG, ["HEAD", "/livez"])]


def test_the_log_config_is_valid_and_gives_every_line_a_time_level_and_logger() -> None:
    config = log_config("warning")
    logging.config.dictConfig({**config, "loggers": {}})  # checks the schema without touching the test's loggers
    fmt = config["formatters"]["plain"]["format"]
    assert all(k in fmt for k in ("%(asctime)s", "%(levelname)s", "%(name)s"))
    assert config["loggers"]["service"]["level"] == "WARNING"
    assert config["loggers"]["uvicorn.access"]["handlers"] == []  # replaced by service.access
