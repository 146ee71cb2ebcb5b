"""The served OpenAPI document writes integer bounds as JSON integers (the seed's limit is 2**63, exactly)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from service.api.deps import Services
from service.api.schemas import INTEGER_BOUNDS


def integer_schemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "integer":
            yield node
        for value in node.values():
            yield from integer_schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from integer_schemas(value)


async def test_integer_bounds_are_exact_integers(api: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = api
    r = await client.get("/openapi.json")
    text = r.text
    doc = json.loads(text)
    seed = doc["components"]["schemas"]["SampleRequest"]["properties"]["seed"]["anyOf"][0]
    assert seed["exclusiveMaximum"] == 2**63 and '"exclusiveMaximum":9223372036854775808' in text.replace(" ", "")
    bounded = [s for s in integer_schemas(doc) if any(k in s for k in INTEGER_BOUNDS)]
    assert len(bounded) >= 3  # n, seed, steps at least
    assert all(type(s[k]) is int for s in bounded for k in INTEGER_BOUNDS if k in s), bounded
