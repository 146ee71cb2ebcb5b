"""``Accept`` negotiation of sample bodies (JSON or npz): q weights, case, specificity, and 406."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest

from service.api.deps import Services
from service.api.errors import NotAcceptable
from service.api.negotiation import wants_npz

API = tuple[httpx.AsyncClient, Services]


@pytest.mark.parametrize(("accept", "npz"), [
    (None, False),
    ("", False),
    ("application/json", False),
    ("application/x-npz", True),
    ("APPLICATION/X-NPZ", True),  # media types are case-insensitive
    ("application/json, application/x-npz;q=0", False),  # q=0: never this one
    ("application/x-npz;q=0.1, application/json", False),  # the client prefers JSON
    ("application/x-npz, application/json;q=0.5", True),
    ("application/x-npz, application/json", True),  # a tie between exact ranges: npz, as named
    ("application/x-npz, */*", True),  # a tie: the exact range wins over the wildcard
    ("*/*", False),
    ("application/*", False),
    ("text/html, */*;q=0.8", False),
    ("application/x-npz;q=bogus, application/json;q=0.2", False),  # a malformed q drops its range
])
def test_wants_npz(accept: str | None, npz: bool) -> None:
    assert wants_npz(accept) is npz


@pytest.mark.parametrize("accept", ["image/png", "text/html", "application/json;q=0, application/x-npz;q=0",
                                    "*/*;q=0"])
def test_nothing_acceptable_is_406_naming_the_offered_types(accept: str) -> None:
    with pytest.raises(NotAcceptable) as err:
        wants_npz(accept)
    assert err.value.param == "accept" and "application/json, application/x-npz" in err.value.message


async def test_routes_honour_q_and_answer_406(api: API) -> None:
    client, _ = api
    body = {"model": "gauss", "n": 2, "seed": 3, "steps": 5}
    r = await client.post("/v1/samples/mh", json=body, headers={"accept": "application/json, application/x-npz;q=0"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    r = await client.post("/v1/samples/mh", json=body, headers={"accept": "Application/X-NPZ"})
    assert r.status_code == 200 and np.load(io.BytesIO(r.content))["samples"].shape == (2, 1)
    r = await client.post("/v1/samples/mh", json=body, headers={"accept": "image/png"})
    assert r.status_code == 406 and r.json()["error"]["type"] == "not_acceptable"
    assert r.json()["error"]["param"] == "accept"
