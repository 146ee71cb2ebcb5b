"""Threads that run torch beside the device workers: model work in a thread of its own that ends with it."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest
import torch

from service.engine.threads import in_own_thread, run_in_own_thread, torch_threads

TEAM = 2
"""torch threads of the team under test (explicit: an earlier test may have left torch's process default at 1)."""


def _parallel_op() -> int:
    with torch_threads(TEAM):
        torch.ones(1 << 21).add_(1.0).sum()  # far above torch's grain size: runs on an OpenMP team
    return threading.get_ident()


def _os_threads() -> set[str]:
    return set(os.listdir("/proc/self/task"))


async def _new_threads_left(before: set[str], patience_s: float = 5.0) -> set[str]:
    """Threads started since ``before`` that are still there once the ones ending have had ``patience_s`` to go
    (threads of other tests may end meanwhile; only new ones count)."""
    deadline = time.monotonic() + patience_s
    while (new := _os_threads() - before) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return new


def test_in_own_thread_returns_from_a_thread_that_has_ended() -> None:
    seen: dict[str, object] = {}

    def work(a: int, b: int) -> int:
        seen["thread"] = threading.current_thread()
        seen["threads"] = torch.get_num_threads()
        return a + b

    async def main() -> int:
        return await in_own_thread(work, 2, 3, threads=1)

    before = torch.get_num_threads()
    assert asyncio.run(main()) == 5
    th = seen["thread"]
    assert isinstance(th, threading.Thread) and th is not threading.current_thread()
    th.join(timeout=5)
    assert not th.is_alive()
    assert seen["threads"] == 1  # the requested count applied inside
    assert torch.get_num_threads() == before  # and not here


def test_in_own_thread_hands_the_exception_to_the_caller() -> None:
    def fail() -> None:
        raise KeyError("no such version")

    async def main() -> None:
        await in_own_thread(fail)

    with pytest.raises(KeyError, match="no such version"):
        asyncio.run(main())


def test_run_in_own_thread_waits_for_a_thread_that_ends_and_raises_its_errors() -> None:
    """The synchronous form, for a caller that cannot await (a sampler built while a request is prepared)."""
    seen: dict[str, object] = {}

    def work(a: int) -> int:
        seen["thread"] = threading.current_thread()
        return a * 2

    assert run_in_own_thread(work, 21) == 42
    th = seen["thread"]
    assert isinstance(th, threading.Thread) and th is not threading.current_thread()
    th.join(timeout=5)
    assert not th.is_alive()

    def fail() -> None:
        raise ValueError("pilot batch failed")

    with pytest.raises(ValueError, match="pilot batch failed"):
        run_in_own_thread(fail)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_its_openmp_team_ends_with_it_unlike_a_pool_thread() -> None:
    """The point of the helper: a pool thread that ran a parallel torch op keeps an OpenMP team alive beside the
    device workers'; a thread of its own takes its team with it."""
    if (os.cpu_count() or 1) < TEAM:
        pytest.skip(f"needs {TEAM} or more cores")

    async def main() -> tuple[set[str], set[str]]:
        before = _os_threads()
        await in_own_thread(_parallel_op)
        own = await _new_threads_left(before)
        before = _os_threads()
        await asyncio.to_thread(_parallel_op)
        return own, _os_threads() - before

    own, pooled = asyncio.run(main())
    assert own == set()
    assert len(pooled) >= 2  # the pool thread and its team's helpers, still there
