"""``[runtime] threads``: torch's CPU thread count while a device worker steps one model's pools."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch on ``threads`` intra-op CPU threads (None: as it is), then restore the count.

    ``torch.set_num_threads`` (about 0.1 µs) sets the calling thread's OpenMP count, so a device worker can switch
    per pool step without changing the count of a thread that has already used torch (the event loop's: the app
    touches it at start). It also sets torch's process default, which a thread picks up the first time it uses
    torch: a thread first using torch during such a step keeps that step's count (the worker restores the default
    afterwards, so later threads do not). Measured (``benchmarks/
    runtime_results.md``): a 2-D MLP's gradient samplers and small requests run 1.8-3.8x faster on one thread of
    this project's 2-core box, while its 4096-row proposal blocks (mh, drs) run 0.8x and conv models lose 0.5-0.9x.
    """
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def settle_thread_count() -> int:
    """Make the calling thread take the process default now (torch initialises a thread's count at its first use),
    so that a later :func:`torch_threads` in another thread cannot change it. Returns the count."""
    return torch.get_num_threads()


# --- one OpenMP team per process -------------------------------------------------------------------------------
#
# A thread that runs a parallel torch op on the CPU keeps an OpenMP team of ``torch.get_num_threads() - 1`` helper
# threads for as long as it lives. Once the process holds more OpenMP threads than there are cores, libgomp stops
# spinning between parallel regions (its "throttled" mode) and every region pays a futex wake-up: measured on the
# project's 2-core box, a device worker's raw step on the 2-D MLP at 256 rows took 1.2 ms instead of 0.72 ms after
# the model loader's thread had run the model once (``benchmarks/speed_findings.md``, §B). So, besides the device
# workers, a thread that runs the networks ends with that work (model loading: :func:`in_own_thread`; building a
# sampler whose constructor runs them, ``ModelHub.algo``: :func:`run_in_own_thread`), and what the event loop and
# its pool threads do per request (submitting, diagnostics, response encoding) runs no torch op: numpy starts no
# OpenMP team (``benchmarks/server_teams.py`` watches the server's threads).

T = TypeVar("T")


def _own_thread(fn: Callable[..., T], args: tuple[Any, ...], threads: int | None) -> concurrent.futures.Future[T]:
    """Start ``fn(*args)`` in a new thread that ends with it; its Future holds the result or the exception."""
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def body() -> None:
        if not done.set_running_or_notify_cancel():  # running: the caller can no longer cancel it
            return
        try:
            with torch_threads(threads):
                done.set_result(fn(*args))
        except BaseException as exc:  # handed to the caller
            done.set_exception(exc)

    threading.Thread(target=body, name=f"gansampler-{getattr(fn, '__name__', 'task')}", daemon=True).start()
    return done


async def in_own_thread(fn: Callable[..., T], *args: Any, threads: int | None = None) -> T:
    """Await ``fn(*args)`` run in a new thread that ends with it (its OpenMP team ends too), with torch on
    ``threads`` CPU threads (None: the process default). Exceptions propagate to the awaiting task."""
    return await asyncio.wrap_future(_own_thread(fn, args, threads))


def run_in_own_thread(fn: Callable[..., T], *args: Any, threads: int | None = None) -> T:
    """``fn(*args)`` run in a new thread that ends with it, waited for: for network work that a long-lived thread
    other than a device worker must do synchronously (a sampler whose constructor runs the model, such as DRS's
    pilot batch, built while a request is prepared on the event loop). Exceptions propagate to the caller."""
    return _own_thread(fn, args, threads).result()
