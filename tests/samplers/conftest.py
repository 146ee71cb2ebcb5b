"""Sampler tests run torch on one intra-op thread: on a small shared machine, OpenMP's thread hand-off costs more
than the tiny analytic batches, and results must not depend on it anyway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
