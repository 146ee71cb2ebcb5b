"""Time per request with uvicorn's HTTP parser and event loop: h11 on asyncio against httptools on uvloop.

Starts two ``gansampler-server serve`` processes over the same temporary copy of a demo model, one with
``--http h11 --loop asyncio`` and one with ``--http httptools --loop uvloop``, and sends them the same requests
(``POST /v1/samples/{sampler}``, ``Accept: application/x-npz``), one at a time, alternating servers round by round
(order reversed every other round; each side timed by the median of a burst of ``BURST``). ``ratio`` = h11 time /
httptools time, the median of per-round pairs: above 1 means httptools + uvloop serve faster.

This is the evidence behind depending on httptools and uvloop (uvicorn's ``auto`` picks them when installed).

Usage::

    python benchmarks/speed_http_stack.py                 # about 1 minute on 2 cores
    python benchmarks/speed_http_stack.py --samplers raw mh --n 1 256 --rounds 30
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import DEFAULT_MODELS_DIR, fmt, info_block, machine_info, markdown_table, median, write_report
from benchmarks._server import start_server, stop_server
from benchmarks.speed_http import http_sample

STACKS = {"h11 on asyncio": ("--http", "h11", "--loop", "asyncio"),
          "httptools on uvloop": ("--http", "httptools", "--loop", "uvloop")}
MODEL = "gaussians25"
SAMPLERS = ("raw", "mh")
N = (1, 256)
STEPS = 16  # short chains: the comparison is about the per-request cost around the engine
ROUNDS = 20
BURST = 3


def main(argv: Sequence[str] | None = None) -> int:
    import httpx

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=MODEL)
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    p.add_argument("--n", type=int, nargs="+", default=list(N))
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    missing = [m for m in ("httptools", "uvloop") if importlib.util.find_spec(m) is None]
    if missing:
        p.error(f"{', '.join(missing)} not installed: pip install -e . installs both")
    info = machine_info(torch.device("cpu"))
    names = list(STACKS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        shutil.copytree(args.models_dir / args.model, root / args.model)
        servers = {k: start_server(root, Path(tmp) / f"data{i}", extra_args=flags)
                   for i, (k, flags) in enumerate(STACKS.items())}
        try:
            with httpx.Client() as client:
                for sampler, n in ((s, n) for s in args.samplers for n in args.n):
                    steps = 0 if sampler == "raw" else args.steps
                    times: dict[str, list[float]] = {k: [] for k in names}
                    for k in names:  # warm-up: pool, caches, connection
                        for _ in range(BURST):
                            http_sample(client, servers[k][1], args.model, sampler, n, steps)
                    for r in range(args.rounds):
                        for k in names if r % 2 == 0 else reversed(names):
                            burst = [http_sample(client, servers[k][1], args.model, sampler, n, steps)[0]
                                     for _ in range(BURST)]
                            times[k].append(median(burst))
                    a, b = times[names[0]], times[names[1]]
                    ratio = median([x / y for x, y in zip(a, b, strict=True)])
                    rows.append([sampler, n, steps, fmt(median(a) * 1e3), fmt(median(b) * 1e3), f"{ratio:.2f}"])
                    print(f"{sampler} n={n}: h11/httptools {ratio:.2f}", file=sys.stderr, flush=True)
        finally:
            for proc, _ in servers.values():
                stop_server(proc)
    text = "\n".join([
        "## Machine", "", info_block(info), "",
        f"## {args.model}: ms per request, median of {args.rounds} interleaved rounds (each the median of {BURST})",
        "", markdown_table(["sampler", "n", "steps", f"{names[0]} ms", f"{names[1]} ms", "ratio"], rows), "",
    ])
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
