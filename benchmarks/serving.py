"""Serving benchmark: batching efficiency, latency under concurrency, and short requests beside a long job.

Starts ``gansampler-server serve`` on a free loopback port over ``--models`` and drives it over real HTTP:

1. efficiency: 64 concurrent clients each asking ``mh`` n=4 vs one request n=256, same steps, on the 2-D model.
   Ratio of aggregate samples/s (target ≥ 0.8: continuous batching makes 64 small requests nearly as cheap as one).
   Measured over HTTP (clients, HTTP stack and engine) and in-process straight into the engine (batching alone).
2. latency: p50/p99 of ``raw`` n=1 and ``mh`` n=1 at concurrency 1, 16 and 64.
3. mixed: p50/p99 of short ``mh`` requests alone, then while a long job runs on the same model.

    python benchmarks/serving.py [--models models] [--model gaussians25] [--steps 200] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._server import start_server

DEFAULT_MODEL = "gaussians25"
DEFAULT_STEPS = 640  # MH-GAN's K, the demo models' default
EFFICIENCY_CLIENTS = 64
EFFICIENCY_N = 4
EFFICIENCY_REPEATS = 5
LATENCY_CONCURRENCY = (1, 16, 64)
LATENCY_REQUESTS = 128  # per (sampler, concurrency) point
LATENCY_MH_STEPS = 100
MIXED_SHORT = {"n": 4, "steps": 50}
MIXED_REQUESTS = 64
MIXED_CONCURRENCY = 8
MIXED_JOB = {"n": 256, "steps": 20_000}
REQUEST_TIMEOUT_S = 300.0


def pct(values: list[tuple[float, float]], q: float, server: bool = False) -> float:
    """The q-th percentile in ms of client latencies (or of the server's own total_s)."""
    s = sorted(v[1] if server else v[0] for v in values)
    return 1e3 * s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


class LoopbackClient:
    """A minimal keep-alive HTTP/1.1 client over asyncio streams, one connection per concurrent request.

    The load generator runs on the same cores as the server; a general-purpose client (httpx) spends several ms of
    CPU per request with 64 connections open, which would be measured as server latency. This one does only what
    the benchmark needs: POST a JSON body, read a Content-Length response.
    """

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        while self._idle:
            conn = self._idle.pop()
            try:
                return await self._post(conn, path, body)
            except (asyncio.IncompleteReadError, ConnectionError):  # the server closed an idle keep-alive
                conn[1].close()
        return await self._post(await asyncio.open_connection(self.host, self.port), path, body)

    async def _post(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str, body: dict[str, Any]
    ) -> tuple[int, bytes]:
        reader, writer = conn
        data = json.dumps(body).encode()
        writer.write(f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
                     f"content-length: {len(data)}\r\n\r\n".encode() + data)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.lower() == "content-length")
        payload = await reader.readexactly(length)
        self._idle.append(conn)
        return status, payload

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def sample(client: LoopbackClient, sampler: str, body: dict[str, Any]) -> tuple[float, float]:
    """One request; returns (client latency, the server's own timing.total_s) in seconds. Raises on a non-200."""
    t0 = time.perf_counter()
    status, payload = await client.post(f"/v1/samples/{sampler}", {**body, "diagnostics": "none"})
    if status != 200:
        raise RuntimeError(f"{status}: {payload[:200]!r}")
    return time.perf_counter() - t0, float(json.loads(payload)["timing"]["total_s"])


async def closed_loop(
    concurrency: int, total: int, one: Callable[[], Awaitable[tuple[float, float]]]
) -> list[tuple[float, float]]:
    """``concurrency`` clients issuing ``total`` requests back to back; (client, server) latency of each."""
    out: list[tuple[float, float]] = []
    left = total

    async def client_loop() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            out.append(await one())

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return out


def requester(
    client: LoopbackClient, sampler: str, body: dict[str, Any]
) -> Callable[[], Awaitable[tuple[float, float]]]:
    return lambda: sample(client, sampler, body)


async def efficiency(client: LoopbackClient, model: str, steps: int) -> dict[str, Any]:
    body = {"model": model, "steps": steps}
    singles, many, server_max = [], [], []
    for rep in range(EFFICIENCY_REPEATS):
        t0 = time.perf_counter()
        await sample(client, "mh", {**body, "n": EFFICIENCY_CLIENTS * EFFICIENCY_N, "seed": rep})
        singles.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = await asyncio.gather(*(sample(client, "mh", {**body, "n": EFFICIENCY_N, "seed": 1000 * rep + i})
                                     for i in range(EFFICIENCY_CLIENTS)))
        many.append(time.perf_counter() - t0)
        server_max.append(max(server for _, server in got))
    samples = EFFICIENCY_CLIENTS * EFFICIENCY_N
    single_rate, many_rate = samples / statistics.median(singles), samples / statistics.median(many)
    return {"samples": samples, "steps": steps, "repeats": EFFICIENCY_REPEATS,
            "one_request_s": statistics.median(singles), "concurrent_s": statistics.median(many),
            "concurrent_slowest_server_total_s": statistics.median(server_max),
            "one_request_samples_per_s": single_rate, "concurrent_samples_per_s": many_rate,
            "ratio": many_rate / single_rate, "all_one_request_s": singles, "all_concurrent_s": many}


def engine_efficiency(models: Path, model: str, steps: int) -> dict[str, Any]:
    """The same comparison in-process, straight into the engine (no HTTP): batching alone."""
    from service.engine.engine import Engine, EngineConfig
    from service.engine.ticket import PoolKey, Work
    from service.registry import Registry
    from service.samplers import SAMPLERS

    loaded = Registry(models).load(model, max(int(p.name) for p in (models / model).iterdir() if p.name.isdigit()))
    entry = SAMPLERS["mh"]
    algo: Any = entry.cls(loaded.pair, entry.options_cls())
    key = PoolKey(loaded.id, "mh", algo.options, "cpu")
    engine = Engine(EngineConfig(("cpu",), 1024, 1, 0.5, 10**12, 1))
    engine.start()
    singles, many = [], []
    try:
        for rep in range(EFFICIENCY_REPEATS):
            t0 = time.perf_counter()
            engine.submit(Work(key, algo, EFFICIENCY_CLIENTS * EFFICIENCY_N, rep, steps)).future.result()
            singles.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tickets = [engine.submit(Work(key, algo, EFFICIENCY_N, 1000 * rep + i, steps))
                       for i in range(EFFICIENCY_CLIENTS)]
            for t in tickets:
                t.future.result()
            many.append(time.perf_counter() - t0)
    finally:
        engine.stop()
    return {"steps": steps, "one_request_s": statistics.median(singles), "concurrent_s": statistics.median(many),
            "ratio": statistics.median(singles) / statistics.median(many)}


async def latency(client: LoopbackClient, model: str) -> list[dict[str, Any]]:
    rows = []
    for sampler, extra in (("raw", {}), ("mh", {"steps": LATENCY_MH_STEPS})):
        for c in LATENCY_CONCURRENCY:
            body = {"model": model, "n": 1, **extra}
            t0 = time.perf_counter()
            lat = await closed_loop(c, LATENCY_REQUESTS, requester(client, sampler, body))
            wall = time.perf_counter() - t0
            rows.append({"sampler": sampler, "steps": extra.get("steps", 0), "concurrency": c,
                         "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "server_p50_ms": pct(lat, 50, True),
                         "server_p99_ms": pct(lat, 99, True), "req_per_s": len(lat) / wall})
    return rows


async def mixed(client: LoopbackClient, http: httpx.AsyncClient, model: str) -> dict[str, Any]:
    body = {"model": model, **MIXED_SHORT}

    def run() -> Awaitable[list[tuple[float, float]]]:
        return closed_loop(MIXED_CONCURRENCY, MIXED_REQUESTS, lambda: sample(client, "mh", body))

    alone = await run()
    job = (await http.post("/v1/jobs", json={"sampler": "mh", "model": model, **MIXED_JOB})).json()
    while (await http.get(f"/v1/jobs/{job['id']}")).json()["state"] == "queued":
        await asyncio.sleep(0.05)
    beside = await run()
    state = (await http.get(f"/v1/jobs/{job['id']}")).json()
    await http.delete(f"/v1/jobs/{job['id']}")
    return {"short": MIXED_SHORT, "job": MIXED_JOB, "job_state_after": state["state"],
            "job_progress_after": state["progress"],
            "alone_p50_ms": pct(alone, 50), "alone_p99_ms": pct(alone, 99),
            "with_job_p50_ms": pct(beside, 50), "with_job_p99_ms": pct(beside, 99),
            "alone_server_p99_ms": pct(alone, 99, True), "with_job_server_p99_ms": pct(beside, 99, True)}


async def main_async(url: str, model: str, steps: int) -> dict[str, Any]:
    client = LoopbackClient(url)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
            await asyncio.gather(*(sample(client, "mh", {"model": model, "n": 4, "steps": 10})
                                   for _ in range(EFFICIENCY_CLIENTS)))  # open the connections, warm the caches
            return {"efficiency": await efficiency(client, model, steps), "latency": await latency(client, model),
                    "mixed": await mixed(client, http, model)}
    finally:
        await client.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--url", default=None, help="benchmark a running server instead of starting one")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url
        if url is None:
            proc, url = start_server(args.models, Path(tmp))
        try:
            t0 = time.perf_counter()
            res = asyncio.run(main_async(url, args.model, args.steps))
            res["engine_efficiency"] = engine_efficiency(args.models, args.model, args.steps)
            res["meta"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "model": args.model,
                           "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.platform()}",
                           "python": platform.python_version(), "runtime_s": time.perf_counter() - t0,
                           "load_avg": os.getloadavg()}
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    print(json.dumps(res, indent=2))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
