"""Samples/s through the real HTTP server next to the in-process rate, one request at a time (n = 256, or a sweep).

Starts ``gansampler-server serve`` on a free loopback port over a temporary copy of the chosen demo models, then
for every (model, sampler, n) alternates, round by round, one HTTP request (a burst of three, timed by their median,
for calls under 0.1 s: see ``BURST_BELOW_S``) (``POST /v1/samples/{sampler}``,
``Accept: application/x-npz``) with the same work in this process (``run_chains`` on the same registry model,
same steps, params and options). ``ratio`` = HTTP samples/s / in-process samples/s, the median of per-round
pairs (target >= 0.8). The server's own ``timing.compute_s`` is reported beside it, to split the gap into engine
(compute_s vs in-process) and transport (client wall vs compute_s: queueing, HTTP, encoding).

Usage::

    python benchmarks/speed_http.py                       # about 3 minutes on 2 cores
    python benchmarks/speed_http.py --models gaussians25 --samplers mh --steps 640 --rounds 3
    python benchmarks/speed_http.py --n 1 16 256 1024 --rounds 3     # request sizes from 1 to the server's max_n
    python benchmarks/speed_http.py --device cuda:0       # both sides on a GPU (benchmarks/gpu/run.sh http)
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    DEFAULT_MODELS_DIR,
    fmt,
    info_block,
    machine_info,
    markdown_table,
    median,
    registry_model,
    timed,
    write_report,
)
from benchmarks._server import start_server, stop_server
from benchmarks.speed_work import Samplers
from service.allocator import tune_malloc

HTTP_N = 256
HTTP_STEPS = 64
"""Chain length of the HTTP comparison: long enough that one request is compute-bound, short enough to repeat."""
HTTP_MODELS = ("gaussians25", "digits-dcgan")
HTTP_SAMPLERS = ("raw", "mh", "rep", "ddls", "drs", "sir")
ROUNDS = 5
REQUEST_TIMEOUT_S = 600.0
BURST = 3
BURST_BELOW_S = 0.1
"""A call shorter than this is timed as the median of ``BURST`` back-to-back calls on each side, every round.
The server and this process share the cores: for a few ms after a call, a process's OpenMP threads still spin
(the default wait policy), so a short in-process call timed just after an HTTP request ran up to 10x slower (raw on
the MLP: 5.3 ms against 0.53 ms), which made raw's ratio look far better than it is. The first call of a burst
pays that, the median does not; MCMC calls (tens of ms and more) are timed once."""
SEED = 1234


def http_sample(client: object, url: str, model: str, sampler: str, n: int, steps: int) -> tuple[float, float]:
    """(client wall seconds, server compute_s) of one request; checks the body holds n samples."""
    body = {"model": model, "n": n, "seed": SEED, "output": "array", "diagnostics": "summary"}
    if steps:
        body["steps"] = steps
    t0 = time.perf_counter()
    r = client.post(f"{url}/v1/samples/{sampler}", json=body,  # type: ignore[attr-defined]
                    headers={"accept": "application/x-npz"}, timeout=REQUEST_TIMEOUT_S)
    wall = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"{sampler} on {model}: HTTP {r.status_code}: {r.text[:300]}")
    npz = np.load(io.BytesIO(r.content))
    if npz["samples"].shape[0] != n:
        raise RuntimeError(f"{sampler} on {model}: {npz['samples'].shape[0]} samples, expected {n}")
    meta = json.loads(npz["meta.json"].tobytes())
    return wall, float(meta["timing"]["compute_s"])


def main(argv: Sequence[str] | None = None) -> int:
    import httpx

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(HTTP_MODELS))
    p.add_argument("--samplers", nargs="+", default=list(HTTP_SAMPLERS), choices=list(HTTP_SAMPLERS))
    p.add_argument("--n", type=int, nargs="+", default=[HTTP_N],
                   help=f"request sizes (default {HTTP_N}; a sweep: --n 1 16 256 1024, the server's max_n)")
    p.add_argument("--steps", type=int, default=HTTP_STEPS)
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--threads", type=int, help="torch threads here and in the server (default: torch's)")
    p.add_argument("--device", default="cpu",
                   help="device of both sides: the in-process run and the server's worker (e.g. cuda:0)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    tune_malloc()  # as `gansampler-server serve` does, so both sides run with the same allocator settings
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    info = machine_info(dev)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        for name in args.models:
            shutil.copytree(args.models_dir / name, root / name)
        proc, url = start_server(root, Path(tmp) / "data", args.threads, args.device)
        try:
            samplers = Samplers()
            with httpx.Client() as client:
                for name in args.models:
                    model = registry_model(name, dev, root)
                    assert model is not None
                    for sampler, n in ((s, n) for s in args.samplers for n in args.n):
                        steps = 0 if sampler == "raw" else args.steps
                        run = samplers.run_fn(model, sampler, n, steps, dev)
                        # timed: synchronised on the device, as the HTTP side returns finished samples
                        burst = BURST if timed(run, dev) < BURST_BELOW_S else 1
                        http_sample(client, url, name, sampler, n, steps)  # warm-up (pool, caches)
                        walls, computes, local = [], [], []
                        for r in range(args.rounds):
                            order = (0, 1) if r % 2 == 0 else (1, 0)
                            for which in order:
                                if which == 0:
                                    pairs = [http_sample(client, url, name, sampler, n, steps) for _ in range(burst)]
                                    walls.append(median([w for w, _ in pairs]))
                                    computes.append(median([c for _, c in pairs]))
                                else:
                                    local.append(median([timed(run, dev) for _ in range(burst)]))
                        ratio = median([lo / w for lo, w in zip(local, walls, strict=True)])
                        rows.append([name, sampler, n, steps, fmt(n / median(local)),
                                     fmt(n / median(walls)), fmt(median(computes) * 1e3),
                                     fmt(median(walls) * 1e3), f"{ratio:.2f}"])
                        print(f"{name} {sampler} n={n}: HTTP/in-process {ratio:.2f}", file=sys.stderr, flush=True)
        finally:
            stop_server(proc)
    text = "\n".join([
        "## Machine", "", info_block(info), "",
        f"## HTTP vs in-process, n = {', '.join(map(str, args.n))}, median of {args.rounds} interleaved rounds", "",
        markdown_table(["model", "sampler", "n", "steps", "in-process samples/s", "HTTP samples/s",
                        "server compute ms", "HTTP wall ms", "ratio"], rows), "",
    ])
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
