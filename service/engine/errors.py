"""Engine errors. The API maps each class to an HTTP status in one table (``service.api.errors``).

EngineError
├── Overloaded          admission queue full (chain-steps); carries ``retry_after`` seconds        -> 429
├── TooLargeToAdmit     one request's chain-steps alone exceed the queue's limit: never admitted   -> 413
├── DeadlineExceeded    the request's deadline passed (queue time included); its chains dropped    -> 504
├── Cancelled           the client went away or the job was cancelled; its chains dropped          -> 499
├── ModelFailed         the model raised while its pool stepped; only that pool's requests fail    -> 500
└── EngineStopped       the engine shut down before the request finished                           -> 503
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of the engine errors."""


class Overloaded(EngineError):
    def __init__(self, queued: int, cost: int, limit: int, retry_after: int) -> None:
        super().__init__(
            f"server overloaded: {queued} chain-steps queued + {cost} requested exceeds "
            f"max_queue_chain_steps={limit}; retry after {retry_after} s"
        )
        self.queued = queued
        self.cost = cost
        self.limit = limit
        self.retry_after = retry_after


class TooLargeToAdmit(EngineError):
    """A request whose cost alone exceeds ``max_queue_chain_steps``: no wait can admit it, so not a 429 (which
    clients retry) but a 413 naming the limit."""

    param = "steps"  # the request field to lower (n × steps), as for the per-request chain-steps limit

    def __init__(self, cost: int, limit: int) -> None:
        super().__init__(
            f"{cost} chain-steps requested (n × steps) exceeds max_queue_chain_steps={limit}, the most the server "
            "queues at once: it can never be admitted; lower n or steps, or run it as a job (POST /v1/jobs)"
        )
        self.cost = cost
        self.limit = limit


class DeadlineExceeded(EngineError):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"request did not finish within timeout_s={timeout_s:g} (queue time included)")
        self.timeout_s = timeout_s


class Cancelled(EngineError):
    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason = reason


class ModelFailed(EngineError):
    def __init__(self, model: str, sampler: str, cause: BaseException) -> None:
        super().__init__(f"model {model} failed while running sampler {sampler!r}: {type(cause).__name__}: {cause}")
        self.model = model
        self.sampler = sampler
        self.cause = cause


class EngineStopped(EngineError):
    def __init__(self) -> None:
        super().__init__("the sampling engine is shutting down")
