"""``[runtime] threads``: torch's CPU thread count while a device worker steps one model's pools."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
