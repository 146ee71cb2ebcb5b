"""No request leaves the real server with more threads than before it: a torch op that goes parallel outside the
device worker (the event loop, a pool thread encoding a body) would give that thread an OpenMP team for good, and
every later step would run slower (``benchmarks/server_teams.py``)."""

from __future__ import annotations

import pytest

from benchmarks import server_teams
from benchmarks._common import DEFAULT_MODELS_DIR

pytestmark = pytest.mark.slow  # about 30 s on 2 shared cores: a real server, six heavier requests


def test_heavier_requests_start_no_thread_in_the_server() -> None:
    rows = server_teams.run_probes(DEFAULT_MODELS_DIR, reps=2)
    assert [r["probe"] for r in rows] == [p[0] for p in server_teams.PROBES]
    for r in rows:
        assert r["threads_after"] == r["threads_before"], r
        assert r["compute_before_s"] > 0 and r["compute_after_s"] > 0, r
