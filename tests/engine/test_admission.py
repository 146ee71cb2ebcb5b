"""Admission control: the chain-steps limit, and a Retry-After estimated from the work queued, pool by pool."""

from __future__ import annotations

import math

import pytest

from service.engine.admission import INITIAL_THROUGHPUT, MAX_RETRY_AFTER_S, AdmissionController
from service.engine.errors import Overloaded, TooLargeToAdmit
from service.engine.ticket import PoolKey

SLOW = PoolKey("digits@1", "rep", (), "cpu")
FAST = PoolKey("gaussians25@1", "raw", (), "cpu")


def refused(a: AdmissionController, key: PoolKey, cost: int) -> Overloaded:
    with pytest.raises(Overloaded) as info:
        a.reserve(key, cost)
    return info.value


def test_a_burst_on_a_fast_pool_is_not_told_to_wait_at_a_slow_pool_rate() -> None:
    a = AdmissionController(limit=100_000, min_retry_after_s=1)
    a.observe(SLOW, 1_000, 1.0)  # 1k chain-steps/s
    a.observe(FAST, 1_000_000, 1.0)  # 1M chain-steps/s
    a.reserve(FAST, 100_000)
    err = refused(a, FAST, 50_000)
    assert err.retry_after == 1  # 50k at 1M/s: well under a second
    assert a.queued == 100_000  # nothing reserved by the refusal


def test_retry_after_is_the_excess_over_the_rate_of_the_work_queued() -> None:
    a = AdmissionController(limit=10_000, min_retry_after_s=1)
    a.observe(SLOW, 100, 1.0)
    a.observe(FAST, 1_000_000, 1.0)
    a.reserve(SLOW, 10_000)
    assert refused(a, FAST, 500).retry_after == 5  # 500 of the slow pool's work must drain first, at 100/s


def test_pools_on_one_device_take_turns_and_devices_run_side_by_side() -> None:
    a = AdmissionController(limit=3_000, min_retry_after_s=0)
    a.observe(SLOW, 100, 1.0)
    a.observe(FAST, 900, 1.0)
    a.reserve(SLOW, 1_000)  # 10 s of stepping
    a.reserve(FAST, 1_800)  # 2 s of stepping
    assert a.drain_rate() == pytest.approx(2_800 / 12)  # one worker steps the two pools in turn
    other = PoolKey("gaussians25@1", "raw", (), "cuda:0")
    a.observe(other, 200, 1.0)
    a.reserve(other, 200)
    assert a.drain_rate() == pytest.approx(2_800 / 12 + 200)
    assert refused(a, FAST, 1_000).retry_after == math.ceil(1_000 / (2_800 / 12 + 200))


def test_release_by_key_empties_the_queue_and_the_estimate() -> None:
    a = AdmissionController(limit=1_000, min_retry_after_s=2)
    a.reserve(SLOW, 600)
    a.reserve(FAST, 300)
    a.release(SLOW, 400)
    a.release(FAST, 300)
    a.release(FAST, 50)  # more than a key reserved: nothing left to give back
    assert a.queued == 200
    a.release(SLOW, 200)
    assert a.queued == 0
    assert a.drain_rate() == 0.0
    a.observe(FAST, 10**6, 1.0)
    a.reserve(FAST, 100)
    assert refused(a, SLOW, 950).retry_after == 2  # 50 over, drained in well under a second: the configured minimum


def test_an_unmeasured_pool_uses_the_initial_rate_and_a_reload_keeps_its_pool_rate() -> None:
    a = AdmissionController(limit=10, min_retry_after_s=0)
    assert a.rate(SLOW) == INITIAL_THROUGHPUT
    a.observe(SLOW, 50, 1.0)
    a.observe(SLOW, 150, 1.0)
    assert a.rate(SLOW) == pytest.approx(0.8 * 50 + 0.2 * 150)  # the first measurement, then an EMA
    assert a.rate(SLOW._replace(generation=3)) == a.rate(SLOW)


def test_retry_after_is_capped() -> None:
    a = AdmissionController(limit=10**9, min_retry_after_s=1)
    a.observe(SLOW, 1, 1.0)
    a.reserve(SLOW, 10**9)
    assert refused(a, SLOW, 10**6).retry_after == MAX_RETRY_AFTER_S


def test_a_request_larger_than_the_whole_queue_is_too_large_not_overloaded() -> None:
    """Retrying (429) could never help: it would not fit an empty queue. 413 naming the limit, the cost and the
    setting; nothing reserved, and a request of exactly the limit still fits an empty queue."""
    a = AdmissionController(limit=1_500_000, min_retry_after_s=1)
    with pytest.raises(TooLargeToAdmit) as info:
        a.reserve(SLOW, 1_945_600)
    err = info.value
    assert (err.cost, err.limit, err.param) == (1_945_600, 1_500_000, "steps")
    assert str(err).startswith("1945600 chain-steps requested (n × steps) exceeds max_queue_chain_steps=1500000")
    assert not isinstance(err, Overloaded) and not hasattr(err, "retry_after")
    assert a.queued == 0
    a.reserve(SLOW, 1_500_000)
    assert a.queued == 1_500_000
    assert isinstance(refused(a, SLOW, 1), Overloaded)  # fits once the queue drains: 429 as before
