"""Admission control in chain-steps (n × steps), not requests.

Synchronous requests reserve their cost when submitted and give it back as their chains step (and the rest when
they finish or are dropped). When ``queued + cost`` would exceed the limit the request is refused with
:class:`Overloaded`, whose ``retry_after`` is the time the engine needs to run the excess at its measured rate.
Jobs are not counted here: they wait in the job queue and hold at most a share of each pool's rows.
"""

from __future__ import annotations

import math
import threading

from service.engine.errors import Overloaded

THROUGHPUT_EMA = 0.2  # weight of the newest measurement in the chain-steps/s estimate
INITIAL_THROUGHPUT = 10_000.0  # chain-steps/s assumed before anything ran
MAX_RETRY_AFTER_S = 300


class AdmissionController:
    """Thread-safe counter of reserved chain-steps with a throughput estimate for Retry-After."""

    def __init__(self, limit: int, min_retry_after_s: int) -> None:
        self.limit = limit
        self.min_retry_after_s = min_retry_after_s
        self._queued = 0
        self._rate = INITIAL_THROUGHPUT
        self._lock = threading.Lock()

    @property
    def queued(self) -> int:
        return self._queued

    def reserve(self, cost: int) -> None:
        """Reserve ``cost`` chain-steps or raise :class:`Overloaded` (nothing reserved then)."""
        with self._lock:
            if self._queued + cost > self.limit:
                raise Overloaded(self._queued, cost, self.limit, self._retry_after(self._queued + cost - self.limit))
            self._queued += cost

    def release(self, amount: int) -> None:
        if amount <= 0:
            return
        with self._lock:
            self._queued = max(0, self._queued - amount)

    def observe(self, chain_steps: int, seconds: float) -> None:
        """Feed one iteration's work into the throughput estimate."""
        if seconds <= 0 or chain_steps <= 0:
            return
        with self._lock:
            self._rate = (1 - THROUGHPUT_EMA) * self._rate + THROUGHPUT_EMA * (chain_steps / seconds)

    def _retry_after(self, excess: int) -> int:
        wait = math.ceil(excess / max(self._rate, 1e-9))
        return int(min(MAX_RETRY_AFTER_S, max(self.min_retry_after_s, wait)))
