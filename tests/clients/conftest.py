"""Fixtures for the SDK tests: a scripted fake server behind ``httpx.MockTransport``, recorded sleeps, and
response bodies shaped exactly as ``docs/api.md`` documents them."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from gansampler import AsyncClient, Client

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeServer:
    """Routes ``(METHOD, path)`` to a handler, or plays a script of responses; records every request."""

    routes: dict[tuple[str, str], Handler | list[httpx.Response | Exception]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def add(self, method: str, path: str, responder: Handler | list[httpx.Response | Exception]) -> None:
        self.routes[(method, path)] = responder

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        responder = self.routes.get((request.method, request.url.path))
        if responder is None:
            return error_response(404, "not_found", f"no route {request.method} {request.url.path}")
        if isinstance(responder, list):
            item = responder.pop(0) if len(responder) > 1 else responder[0]
            if isinstance(item, Exception):
                raise item
            return item
        return responder(request)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


def error_response(
    status: int, type_: str, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status,
        json={"error": {"type": type_, "message": message, "param": param}},
        headers={"request-id": f"req-{status}", **(headers or {})},
    )


def png_b64(value: int, size: int = 4, mode: str = "L") -> str:
    from PIL import Image

    image = Image.new(mode, (size, size), color=value if mode == "L" else (value, 0, 255 - value))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def sample_body(
    n: int = 3, *, output: str = "png", shape: tuple[int, ...] = (1, 4, 4), seed: int = 7
) -> dict[str, Any]:
    if output == "png":
        samples: list[Any] = [png_b64(40 * i) for i in range(n)]
    else:
        samples = [[float(i) + 0.5 * j for j in range(shape[0])] for i in range(n)]
    return {
        "model": "toy@1",
        "sampler": "rep",
        "seed": seed,
        "n": n,
        "steps": 20,
        "output": output,
        "shape": list(shape),
        "samples": samples,
        "diagnostics": {
            "acceptance_rate": 0.41,
            "accepted": 25,
            "proposals": 60,
            "nonfinite": 0,
            "calibrated": True,
            "exact": True,
            "logit_initial_mean": -0.8,
            "logit_final_mean": 0.3,
            "sampler": {},
        },
        "timing": {"queue_s": 0.002, "compute_s": 0.81, "total_s": 0.83},
    }


def job_body(state: str = "queued", progress: float = 0.0, job_id: str = "job_1", **extra: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "state": state,
        "progress": progress,
        "steps_done": int(progress * 100),
        "steps_total": 100,
        "created_at": "2026-01-01T00:00:00Z",
        "finished_at": None,
        "error": None,
        "request": {"sampler": "rep", "model": "toy", "n": 3},
        **extra,
    }


MODEL_INFO: dict[str, Any] = {
    "name": "toy",
    "version": 1,
    "id": "toy@1",
    "description": "a toy",
    "state": "ready",
    "error": None,
    "device": "cpu",
    "latent_shape": [8],
    "output": {"kind": "image", "shape": [1, 4, 4], "range": [-1.0, 1.0]},
    "formats": {"generator": "safetensors", "discriminator": "safetensors"},
    "discriminator_output": "logit",
    "calibration": {"method": "platt", "a": 1.1, "b": -0.2, "auc": 0.71, "dawid_z": 0.4, "ece": 0.02, "brier": 0.2},
    "samplers": {
        "rep": {
            "supported": True,
            "reason": None,
            "exact": True,
            "default_steps": 640,
            "params": [{"name": "step_size", "default": 0.01, "low": 1e-6, "high": 1.0, "doc": "L2MC step"}],
            "options": {"proposal": ["l2mc", "prior"]},
        },
        "drs": {"supported": False, "reason": "not calibrated", "exact": False, "default_steps": 50},
        "ddls": {
            "supported": True,
            "reason": None,
            "exact": False,
            "default_steps": 1000,
            "params": [],
            "options": {
                "decay": [False, True],
                "limit": [{"type": "number", "low": -1.0, "high": 1.0, "nullable": True}],
            },
        },
    },
}


class Sleeps(list[float]):
    """Records requested sleeps instead of sleeping (sync and async flavours)."""

    def sync(self, seconds: float) -> None:
        self.append(seconds)

    async def async_(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(server: FakeServer, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.delenv("GANSAMPLER_URL", raising=False)
    monkeypatch.delenv("GANSAMPLER_API_KEY", raising=False)
    c = Client("http://test", api_key="k", transport=httpx.MockTransport(server), max_retries=2)
    c._sleep = sleeps.sync
    c._random = lambda: 0.0  # no jitter: delays are exact
    return c


@pytest.fixture
def aclient(server: FakeServer, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch) -> AsyncClient:
    monkeypatch.delenv("GANSAMPLER_URL", raising=False)
    monkeypatch.delenv("GANSAMPLER_API_KEY", raising=False)
    c = AsyncClient("http://test", api_key="k", transport=httpx.MockTransport(server), max_retries=2)
    c._sleep = sleeps.async_
    c._random = lambda: 0.0
    return c
