"""Values JSON cannot carry are refused by the SDK before anything is sent, with the field's path named."""

from __future__ import annotations

import math

import httpx
import pytest
from gansampler import AsyncClient, Client, GansamplerError, InvalidArgumentError


def never_sent(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"nothing may be sent, got {request.method} {request.url}")


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"params": {"step_size": math.nan}}, "params.step_size"),
    ({"params": {"noise_scale": math.inf}}, "params.noise_scale"),
    ({"options": {"logit_max": -math.inf}}, "options.logit_max"),
    ({"timeout_s": math.nan}, "timeout_s"),
])
def test_sync_refuses_non_finite_values(kwargs: dict[str, object], param: str) -> None:
    with (Client("http://test", transport=httpx.MockTransport(never_sent), max_retries=0) as client,
          pytest.raises(InvalidArgumentError) as info):
        client.samples.create("gauss", sampler="rep", n=1, **kwargs)  # type: ignore[arg-type]
    err = info.value
    assert err.param == param and f"{param} must be a finite number" in str(err)
    assert isinstance(err, GansamplerError) and isinstance(err, ValueError)


async def test_async_refuses_non_finite_values_in_a_job() -> None:
    async with AsyncClient("http://test", transport=httpx.MockTransport(never_sent), max_retries=0) as client:
        with pytest.raises(InvalidArgumentError) as info:
            await client.jobs.create("gauss", sampler="rep", n=1, params={"step_size": math.nan})
    assert info.value.param == "params.step_size"
