"""Threads that run torch beside the device workers: model work in a thread of its own that ends with it."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest
import torch

from service.engine.threads import in_own_thread


def _parallel_op() -> int:
    torch.ones(1 << 21).add_(1.0).sum()  # far above torch's grain size: runs on an OpenMP team
    return threading.get_ident()


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_its_openmp_team_ends_with_it_unlike_a_pool_thread() -> None:
    """The point of the helper: a pool thread that ran a parallel torch op keeps an OpenMP team alive beside the
    device workers'; a thread of its own takes its team with it."""
    if torch.get_num_threads() < 2:
        pytest.skip("needs torch on 2 or more threads")

    async def main() -> tuple[int, int, int]:
        start = _os_threads()
        await in_own_thread(_parallel_op)
        await asyncio.sleep(0.05)  # the thread's exit and its team's teardown
        own = _os_threads()
        await asyncio.to_thread(_parallel_op)
        return start, own, _os_threads()

    start, own, pooled = asyncio.run(main())
    assert own == start
    assert pooled >= start + 2  # the pool thread and its team's helpers, still there
