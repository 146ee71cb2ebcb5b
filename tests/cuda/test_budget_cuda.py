"""The step budget on a real GPU: the probe's limit against the allocator's own peak, headroom, real
out-of-memory errors during the probe, pools on CUDA (several models on one GPU; several GPUs in one engine).

Skipped without CUDA. On a GPU machine::

    python -m pytest tests/cuda -m cuda -q

The CPU suite (``tests/engine/test_budget.py``) drives the same code with a simulated device.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from service.engine.budget import MAX_PROBE_ROWS, CudaMemory, StepBudget, probe_max_rows, sampler_step_run
from service.engine.engine import Engine, EngineConfig
from service.engine.ticket import PoolKey, Work
from service.samplers import SAMPLERS, GanPair
from tests.engine.helpers import GATE_TIMEOUT_S, work

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = "cuda:0"
LATENT = 64
IMAGE = (3, 32, 32)
HIDDEN = 2048
SMALL_FRACTION = 0.02  # a budget well below the GPU's size, so the limit is set by memory, not by MAX_PROBE_ROWS
PEAK_SLACK = 1.15  # the real peak at the limit may exceed the linear projection by this factor at most
MODELS = Path(__file__).resolve().parents[2] / "models"


def mlp_pair(device: str = CUDA, hidden: int = HIDDEN) -> GanPair:
    """A GAN-shaped pair whose step memory grows with the rows: G (B, 64) -> (B, 3, 32, 32), D -> (B,)."""
    torch.manual_seed(0)
    out = IMAGE[0] * IMAGE[1] * IMAGE[2]
    g = nn.Sequential(nn.Linear(LATENT, hidden), nn.ReLU(), nn.Linear(hidden, out), nn.Tanh(),
                      nn.Unflatten(1, IMAGE)).to(device).eval()
    d = nn.Sequential(nn.Flatten(), nn.Linear(out, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1),
                      nn.Flatten(0)).to(device).eval()
    for p in [*g.parameters(), *d.parameters()]:
        p.requires_grad_(False)
    return GanPair(g, d, (LATENT,))


def algo_of(sampler: str, pair: GanPair) -> Any:
    entry = SAMPLERS[sampler]
    return entry.cls(pair, entry.options_cls())


def key(model: str = "mlp@1", sampler: str = "mh", device: str = CUDA) -> PoolKey:
    return PoolKey(model, sampler, SAMPLERS[sampler].options_cls(), device)


def real_peak(algo: Any, rows: int, device: str = CUDA) -> int:
    """Bytes over the current allocation that one init + step over ``rows`` rows peaks at."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    sampler_step_run(algo, device)(rows)
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device)) - base


@pytest.mark.parametrize("sampler", ["mh", "rep", "sir"])
def test_the_limit_is_what_fits_the_budget_by_the_allocators_own_peak(sampler: str) -> None:
    algo = algo_of(sampler, mlp_pair())
    b = StepBudget(1024, memory_fraction=SMALL_FRACTION)
    rows = b.rows(key(sampler=sampler), algo)
    r = b.probes[key(sampler=sampler)]
    assert 1 < rows < MAX_PROBE_ROWS, r
    assert r.budget_bytes <= CudaMemory(CUDA).free_bytes() * SMALL_FRACTION * 1.05
    peak = real_peak(algo, rows)
    assert peak <= r.budget_bytes * PEAK_SLACK, (peak, r)
    assert real_peak(algo, 2 * rows) > r.budget_bytes, "the limit is far from tight"


def test_a_larger_share_of_memory_allows_more_rows() -> None:
    algo = algo_of("mh", mlp_pair())
    small = StepBudget(1024, memory_fraction=SMALL_FRACTION).rows(key(), algo)
    large = StepBudget(1024, memory_fraction=4 * SMALL_FRACTION).rows(key(), algo)
    assert 2.5 * small <= large <= 6 * small


def test_a_real_out_of_memory_error_during_the_probe_is_caught_and_released() -> None:
    dev = torch.device(CUDA)
    huge = 1 << 40  # one TiB: no GPU has it

    def run(rows: int) -> None:
        torch.empty(rows * 1024, device=dev)
        if rows >= 8:  # a step that the linear memory model does not predict
            torch.empty(huge, dtype=torch.uint8, device=dev)

    reserved = torch.cuda.memory_reserved(dev)
    r = probe_max_rows(run, CudaMemory(CUDA), memory_fraction=1.0)
    assert r.rows == 7 and r.failed_rows == 8  # 4 fits, 8 fails; bisection: 6 and 7 fit
    assert torch.cuda.memory_reserved(dev) <= reserved + (64 << 20)


def test_a_sampler_that_runs_out_of_memory_above_some_rows_gets_a_smaller_limit() -> None:
    pair = mlp_pair()
    g = pair.generator

    def generator(z: torch.Tensor) -> torch.Tensor:
        if z.shape[0] > 5:
            torch.empty(1 << 40, dtype=torch.uint8, device=z.device)
        return g(z)

    algo = algo_of("mh", pair._replace(generator=generator))
    assert StepBudget(1024, max_step_rows=64).rows(key(), algo) == 5


def test_pools_on_cuda_are_sized_and_sample_like_cpu() -> None:
    e = Engine(EngineConfig((CUDA,), 256, 1, 0.5, 10**9, 1))
    e.start()
    try:
        w = work(n=32, steps=10, seed=7)
        on_gpu = e.submit(dataclasses.replace(w, key=w.key._replace(device=CUDA))).future.result(GATE_TIMEOUT_S)
        assert on_gpu.output.x.device.type == "cuda"
        limits = e.budget.limits()
        assert limits[("gauss@1", "mh", CUDA)] >= 32
    finally:
        e.stop()
    cpu = Engine(EngineConfig(("cpu",), 256, 1, 0.5, 10**9, 1))
    cpu.start()
    try:
        on_cpu = cpu.submit(work(n=32, steps=10, seed=7)).future.result(GATE_TIMEOUT_S)
    finally:
        cpu.stop()
    torch.testing.assert_close(on_gpu.output.z.cpu(), on_cpu.output.z, rtol=1e-4, atol=1e-5)


def test_several_models_on_one_gpu_each_get_their_own_limit() -> None:
    small, large = mlp_pair(hidden=256), mlp_pair(hidden=4096)
    b = StepBudget(1024, memory_fraction=SMALL_FRACTION)
    a = b.rows(key("small@1"), algo_of("mh", small))
    c = b.rows(key("large@1"), algo_of("mh", large))
    assert a > c >= 1
    assert set(b.limits()) == {("small@1", "mh", CUDA), ("large@1", "mh", CUDA)}


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_in_one_engine() -> None:
    devices = ("cuda:0", "cuda:1")
    e = Engine(EngineConfig(devices, 256, 1, 0.5, 10**9, 1))
    e.start()
    try:
        w: Work = work(n=16, steps=5, seed=3)
        results = [e.submit(dataclasses.replace(w, key=w.key._replace(device=d))).future.result(GATE_TIMEOUT_S)
                   for d in devices]
        assert [r.output.x.device.index for r in results] == [0, 1]
        assert {d for _, _, d in e.budget.limits()} == set(devices)
    finally:
        e.stop()


@pytest.mark.skipif(not (MODELS / "digits-dcgan").is_dir(), reason="demo models not built")
def test_a_demo_model_from_the_registry_is_probed_for_gradient_samplers() -> None:
    from service.registry import Registry

    reg = Registry(MODELS, CUDA)
    reg.load_all(["digits-dcgan"])
    model = reg.get("digits-dcgan")
    b = StepBudget(1024, memory_fraction=SMALL_FRACTION)
    for sampler in ("mh", "rep"):
        rows = b.rows(key(model.id, sampler), algo_of(sampler, model.pair))
        assert rows >= 1
        assert real_peak(algo_of(sampler, model.pair), rows) <= b.probes[key(model.id, sampler)].budget_bytes * PEAK_SLACK
