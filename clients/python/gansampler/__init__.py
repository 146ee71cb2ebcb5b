"""gansampler: Python SDK for the gansampler HTTP API (post-hoc MCMC sampling from trained GANs).

>>> from gansampler import Client
>>> client = Client("http://127.0.0.1:8000")           # or $GANSAMPLER_URL, $GANSAMPLER_API_KEY
>>> batch = client.samples.create("digits-dcgan", sampler="rep", n=16, seed=7)
>>> batch.images[0].save("first.png"); batch.diagnostics.acceptance_rate
>>> job = client.jobs.create("digits-dcgan", sampler="rep", n=512, steps=2000)
>>> job.wait(progress=True); job.result().save("out/")
"""

from ._base_client import RequestSpec
from ._client import AsyncClient, Client
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_POLL_INTERVAL_S,
    DEFAULT_TIMEOUT_S,
    __version__,
)
from ._decode import NpzBatch, make_grid
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GansamplerError,
    GatewayTimeoutError,
    InternalServerError,
    InvalidArgumentError,
    JobFailedError,
    JobWaitTimeoutError,
    MissingDependencyError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    WaitTimeoutError,
)
from ._models import (
    Calibration,
    ChainDiagnostics,
    Diagnostics,
    JobLimits,
    JobList,
    JobStatus,
    ModelInfo,
    OutputSpec,
    ParamInfo,
    Readiness,
    RequestLimits,
    SampleBatch,
    SamplerInfo,
    ServerLimits,
    Timing,
    Traces,
)
from ._progress import ProgressBar
from ._types import NOT_GIVEN, NotGiven
from .resources.jobs import AsyncJob, Job

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_POLL_INTERVAL_S",
    "DEFAULT_TIMEOUT_S",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncJob",
    "AuthenticationError",
    "BadRequestError",
    "Calibration",
    "ChainDiagnostics",
    "Client",
    "ConflictError",
    "Diagnostics",
    "GansamplerError",
    "GatewayTimeoutError",
    "InternalServerError",
    "InvalidArgumentError",
    "Job",
    "JobFailedError",
    "JobLimits",
    "JobList",
    "JobStatus",
    "JobWaitTimeoutError",
    "MissingDependencyError",
    "ModelInfo",
    "NotFoundError",
    "NotGiven",
    "NpzBatch",
    "OutputSpec",
    "ParamInfo",
    "PayloadTooLargeError",
    "ProgressBar",
    "RateLimitError",
    "Readiness",
    "RequestLimits",
    "RequestSpec",
    "SampleBatch",
    "SamplerInfo",
    "ServerLimits",
    "ServiceUnavailableError",
    "Timing",
    "Traces",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "WaitTimeoutError",
    "__version__",
    "make_grid",
]
