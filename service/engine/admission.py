"""Admission control in chain-steps (n × steps), not requests.

Synchronous requests reserve their cost when submitted and give it back as their chains step (and the rest when
they finish or are dropped). When ``queued + cost`` would exceed the limit the request is refused with
:class:`Overloaded`, whose ``retry_after`` is the time the engine needs to run the excess; a request whose cost
alone exceeds the limit could never be admitted, and is refused with :class:`TooLargeToAdmit` (413) instead.

That time is estimated from the work actually queued, pool by pool: each pool key has its own throughput (chain-
steps per second of stepping, an EMA over its steps), a device worker steps its pools in turn, and devices run
side by side. So the queue drains at ``Σ_d queued_d / (Σ_{k on d} queued_k / rate_k)`` chain-steps/s: a burst
on a fast model is not told to wait at the rate of a slow one that ran before it.
Jobs are not counted here: they wait in the job queue and hold at most a share of each pool's rows.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

from service.engine.errors import Overloaded, TooLargeToAdmit
from service.engine.ticket import PoolKey

THROUGHPUT_EMA = 0.2  # weight of the newest measurement in a pool's chain-steps/s estimate
INITIAL_THROUGHPUT = 10_000.0  # chain-steps/s assumed for a pool that has not stepped yet
MAX_RETRY_AFTER_S = 300
MAX_RATES = 1024  # pool keys whose throughput is remembered (the least recently stepped forgotten first)


def _rate_key(key: PoolKey) -> PoolKey:
    return key._replace(generation=0)  # a reload starts a new generation of the same model: its speed carries over


class AdmissionController:
    """Thread-safe counter of reserved chain-steps per pool key, with per-key throughputs for Retry-After."""

    def __init__(self, limit: int, min_retry_after_s: int) -> None:
        self.limit = limit
        self.min_retry_after_s = min_retry_after_s
        self._queued = 0
        self._by_key: dict[PoolKey, int] = {}
        self._rates: OrderedDict[PoolKey, float] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def queued(self) -> int:
        return self._queued

    def reserve(self, key: PoolKey, cost: int) -> None:
        """Reserve ``cost`` chain-steps on ``key``'s pool or raise :class:`Overloaded` (nothing reserved then), or
        :class:`TooLargeToAdmit` when ``cost`` alone exceeds the limit (retrying cannot help)."""
        if cost > self.limit:
            raise TooLargeToAdmit(cost, self.limit)
        with self._lock:
            if self._queued + cost > self.limit:
                excess = self._queued + cost - self.limit
                raise Overloaded(self._queued, cost, self.limit, self._retry_after(excess))
            self._queued += cost
            self._by_key[key] = self._by_key.get(key, 0) + cost

    def release(self, key: PoolKey, amount: int) -> None:
        if amount <= 0:
            return
        with self._lock:
            held = self._by_key.get(key, 0)
            amount = min(amount, held)  # never more than the key reserved: the total stays the sum of the keys
            if held > amount:
                self._by_key[key] = held - amount
            else:
                self._by_key.pop(key, None)
            self._queued -= amount

    def observe(self, key: PoolKey, chain_steps: int, seconds: float) -> None:
        """Feed one of ``key``'s steps (``chain_steps`` done in ``seconds``) into its throughput estimate."""
        if seconds <= 0 or chain_steps <= 0:
            return
        rate = chain_steps / seconds
        rk = _rate_key(key)
        with self._lock:
            old = self._rates.pop(rk, None)
            self._rates[rk] = rate if old is None else (1 - THROUGHPUT_EMA) * old + THROUGHPUT_EMA * rate
            while len(self._rates) > MAX_RATES:
                self._rates.popitem(last=False)

    def rate(self, key: PoolKey) -> float:
        """``key``'s estimated chain-steps/s (:data:`INITIAL_THROUGHPUT` before it stepped)."""
        return self._rates.get(_rate_key(key), INITIAL_THROUGHPUT)

    def drain_rate(self) -> float:
        """Chain-steps/s at which the queued work drains; 0 when nothing is queued."""
        seconds: dict[str, float] = {}
        work: dict[str, int] = {}
        for key, queued in list(self._by_key.items()):
            seconds[key.device] = seconds.get(key.device, 0.0) + queued / max(self.rate(key), 1e-9)
            work[key.device] = work.get(key.device, 0) + queued
        return sum(work[d] / seconds[d] for d in work if seconds[d] > 0)

    def _retry_after(self, excess: int) -> int:
        rate = self.drain_rate()
        wait = math.ceil(excess / rate) if rate > 0 else self.min_retry_after_s
        return int(min(MAX_RETRY_AFTER_S, max(self.min_retry_after_s, wait)))
