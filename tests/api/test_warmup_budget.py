"""The step budget is found at warm-up: every default pool of a loaded model is probed before the model is ready, a
request without options runs with that limit and probes nothing, and a probe never overlaps a device's step.

The device is simulated (``tests/engine/test_budget.py``'s FakeDevice standing in for a GPU's allocator, named
'cpu' here so that the toy models load on this machine)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

from service.api.app import create_app
from service.api.deps import Services
from service.config import Settings
from service.engine.budget import StepBudget
from service.engine.stats import NullSink
from service.engine.ticket import PoolKey
from tests.engine.helpers import GATE_TIMEOUT_S, Recorder
from tests.engine.test_budget import KIB, FakeDevice


def _budget(dev: FakeDevice) -> StepBudget:
    return StepBudget(64, memory_for=lambda d: dev if d == "cpu" else None,  # type: ignore[arg-type,return-value]
                      run_for=lambda algo, d: dev.run)


async def test_default_pools_are_probed_at_warm_up_not_by_the_first_request(toy_models: Path, tmp_path: Path) -> None:
    dev = FakeDevice(free=1000 * KIB, per_row=KIB)
    budget = _budget(dev)
    app = create_app(Settings(models_dir=toy_models, data_dir=tmp_path), sink=NullSink(), budget=budget)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        await services.wait_loaded()
        gauss = services.hub.get("gauss")[0]
        pools = services.hub.default_pools(gauss)
        assert {k.sampler for k, _ in pools} == {"raw", "mh", "rep", "ddls", "drs", "sir"}
        onnx = services.hub.get("onnx")[0]  # forward-only: no pools for the gradient samplers
        assert {k.sampler for k, _ in services.hub.default_pools(onnx)} == {"raw", "mh", "drs", "sir"}
        assert {k for k, _ in pools} <= set(budget.probes)
        assert budget.limits()[("gauss@1", "mh", "cpu")] == budget.probes[pools[1][0]].rows
        runs = len(dev.runs)
        assert runs > 0
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.post("/v1/samples/mh", json={"model": "gauss", "n": 3, "steps": 4, "seed": 1})
            assert r.status_code == 200, r.text
            assert len(dev.runs) == runs  # the pool's limit was known: nothing probed on the request path
            r = await client.post("/v1/samples/mh", json={"model": "gauss", "n": 3, "steps": 4, "seed": 1,
                                                           "options": {"init": "real"}})
            assert r.status_code == 200, r.text
            assert len(dev.runs) > runs  # options nobody warmed up: probed when first used, as before


async def test_a_probe_waits_for_the_step_in_flight_on_its_device(toy_models: Path, tmp_path: Path) -> None:
    dev = FakeDevice(free=1000 * KIB, per_row=KIB)
    budget = _budget(dev)
    rec = Recorder()
    app = create_app(Settings(models_dir=toy_models, data_dir=tmp_path), sink=NullSink(), observer=rec, budget=budget)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        await services.wait_loaded()
        gauss = services.hub.get("gauss")[0]
        key, algo = services.hub.default_pools(gauss)[1]
        rec.hold(lambda e: True)  # the worker stops inside its next step, holding the device
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            request = asyncio.create_task(
                client.post("/v1/samples/mh", json={"model": "gauss", "n": 2, "steps": 3, "seed": 2}))
            assert await asyncio.to_thread(rec.held.wait, GATE_TIMEOUT_S)
            probed = threading.Event()
            fresh = key._replace(generation=key.generation + 1000)  # a new load of the model: a key not yet probed

            def probe() -> None:
                budget.prepare([(fresh, algo)])
                probed.set()

            thread = threading.Thread(target=probe)
            thread.start()
            assert not probed.wait(0.3)  # blocked on the device lock while the step is in flight
            rec.release()
            assert probed.wait(GATE_TIMEOUT_S)
            thread.join(GATE_TIMEOUT_S)
            assert fresh in budget.probes
            assert (await request).status_code == 200


def test_prepare_skips_devices_without_a_memory_probe() -> None:
    ran: list[int] = []
    b = StepBudget(64, run_for=lambda algo, d: ran.append)  # type: ignore[arg-type]
    b.prepare([(PoolKey("m@1", "mh", None, "cpu"), object())])  # type: ignore[list-item]
    assert ran == [] and b.probes == {} and b.limits() == {}


async def test_nothing_is_built_at_warm_up_on_a_device_without_a_probe(toy_models: Path, tmp_path: Path) -> None:
    app = create_app(Settings(models_dir=toy_models, data_dir=tmp_path), sink=NullSink())
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        await services.wait_loaded()
        assert not services.engine.budget.measures("cpu")
        assert services.hub._algos == {}  # no sampler was built for a probe that would not run


async def test_a_failing_warm_up_probe_leaves_the_model_ready(toy_models: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    dev = FakeDevice(free=1000 * KIB, per_row=KIB)
    budget = _budget(dev)

    def broken(pools: object) -> None:
        raise RuntimeError("the probe broke")

    monkeypatch.setattr(budget, "prepare", broken)
    app = create_app(Settings(models_dir=toy_models, data_dir=tmp_path), sink=NullSink(), budget=budget)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        await services.wait_loaded()
        assert services.hub.readiness()[1]["gauss@1"] == "ready"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.post("/v1/samples/mh", json={"model": "gauss", "n": 2, "steps": 3, "seed": 1})
            assert r.status_code == 200, r.text
        assert budget.probes  # sized at first use instead
