"""Benchmark helpers: the peak-memory probe sees a block's allocations, interleaving alternates the order."""

from __future__ import annotations

import sys

import pytest
import torch

from benchmarks._common import PeakMemory, interleaved, paired_ratio

MIB = 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS through /proc/self/clear_refs")
def test_peak_memory_sees_a_transient_allocation() -> None:
    with PeakMemory(torch.device("cpu")) as small:
        torch.ones(1024).sum()
    with PeakMemory(torch.device("cpu")) as big:
        x = torch.ones(64 * MIB // 4)  # 64 MiB, touched
        del x
    assert big.peak_bytes >= 48 * MIB
    assert small.peak_bytes < 16 * MIB


def test_interleaved_alternates_order_and_counts_rounds() -> None:
    calls: list[str] = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, torch.device("cpu"))
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then a b | b a | a b
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    assert paired_ratio([1.0, 2.0, 30.0], [1.0, 1.0, 1.0]) == 2.0
