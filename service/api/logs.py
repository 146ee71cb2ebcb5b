"""The server's log lines: one format for uvicorn's and gansampler's loggers, and an access line per request that
carries its request id (what error bodies and the SDK's exceptions quote), so a client's report can be found.

    2026-11-23 21:04:05,123 INFO service.api.hub: model digits-dcgan@1 loaded on cpu in 1.42 s (warm-up 0.31 s)
    2026-11-23 21:04:07,480 INFO service.access: POST /v1/samples/mh 200 21.7 ms request-id=9f1c...

Health and metrics requests (``/livez``, ``/readyz``, ``/metrics``: probes and scrapes, every few seconds) log at
DEBUG, everything else at INFO. ``serve --log-level warning`` keeps only problems.
"""

from __future__ import annotations

import logging
from typing import Any

ACCESS_LOGGER = "service.access"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})

access = logging.getLogger(ACCESS_LOGGER)


def log_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn (its ``log_config``): uvicorn's and the service's loggers on
    stderr in one format, at ``level``. uvicorn's own access log is off (``service.access`` replaces it)."""
    lvl = level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": lvl, "propagate": False},
            "uvicorn.error": {"level": lvl},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "service": {"handlers": ["stderr"], "level": lvl, "propagate": False},
        },
    }


def log_access(method: str, path: str, status: int, seconds: float, request_id: str) -> None:
    level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
    if access.isEnabledFor(level):
        access.log(level, "%s %s %d %.1f ms request-id=%s", method, path, status, seconds * 1e3, request_id)
