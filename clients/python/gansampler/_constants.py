"""Named defaults of the SDK, in one place (the README quotes them from here)."""

from __future__ import annotations

__version__ = "0.1.0"

#: Server used when neither ``base_url`` nor ``$GANSAMPLER_URL`` is given (``gansampler-server serve`` default).
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
#: Environment variables read when the matching constructor argument is not given.
ENV_BASE_URL = "GANSAMPLER_URL"
ENV_API_KEY = "GANSAMPLER_API_KEY"

#: Client-side timeout of one HTTP attempt, in seconds (connect timeout is :data:`DEFAULT_CONNECT_TIMEOUT_S`).
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
#: Extra client-side seconds granted on top of a request's server-side ``timeout_s`` (transfer, encoding).
TIMEOUT_MARGIN_S = 10.0

#: Retries after the first attempt (so at most ``1 + DEFAULT_MAX_RETRIES`` attempts).
DEFAULT_MAX_RETRIES = 2
#: Exponential backoff: ``min(INITIAL_RETRY_DELAY_S * 2**retry, MAX_RETRY_DELAY_S)`` scaled by a jitter factor
#: drawn uniformly from ``[1 - RETRY_JITTER, 1]``.
INITIAL_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0
RETRY_JITTER = 0.25
#: A server's ``Retry-After`` is honoured as given (no jitter) up to this many seconds.
MAX_RETRY_AFTER_S = 60.0

#: Statuses retried for every request: the server refused before doing any work.
RETRY_STATUSES_ANY = frozenset({429, 503})
#: Statuses retried only for idempotent requests (GETs, and sampling, which has no side effects): a proxy's 502.
#: Never 504: in this API it means the request's own ``timeout_s`` elapsed, and would elapse again.
RETRY_STATUSES_IDEMPOTENT = frozenset({502})

#: ``health.wait_ready``: how long to wait for the server by default, and how often to ask.
DEFAULT_READY_TIMEOUT_S = 120.0
READY_POLL_INTERVAL_S = 0.25

#: ``Job.wait`` polling interval in seconds.
DEFAULT_POLL_INTERVAL_S = 0.5

#: How long ``Job.wait`` keeps polling a server it cannot reach or that answers 503 (a restart: the job runs again
#: after it), in seconds in a row, before it raises.
DEFAULT_WAIT_OUTAGE_S = 300.0

#: Job states after which nothing changes.
TERMINAL_JOB_STATES = frozenset({"succeeded", "failed", "cancelled", "interrupted"})

SAMPLERS = ("raw", "mh", "rep", "ddls", "drs", "sir")
