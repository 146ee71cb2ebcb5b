"""Does any request leave the server slower? Step time before and after each kind of heavier request.

A torch op that goes parallel in a thread other than the device worker's (the event loop, a pool thread encoding a
large body) gives that thread an OpenMP team of its own, for as long as the thread lives. With more OpenMP threads
than cores libgomp stops spinning between parallel regions, so every later step pays a wake-up: on the 2-D MLP a
step ran about 2x slower for the rest of the server's life (``speed_findings.md`` §C). This starts a real
``gansampler-server serve`` on the demo models and, for each probe request, measures the server's own
``timing.compute_s`` of a fixed rep request (MLP, n = 256, 64 steps) before and after it, with the number of
threads in the server process.

Usage::

    python benchmarks/server_teams.py                 # about 1 minute on 2 cores
    python benchmarks/server_teams.py --fresh         # a new server for each probe: each one's effect alone
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import DEFAULT_MODELS_DIR, fmt, info_block, machine_info, markdown_table, median, write_report
from benchmarks._server import start_server, stop_server

MODELS = ("gaussians25", "digits-dcgan")
REPS = 30
TIMED = {"model": "gaussians25", "n": 256, "seed": 1, "steps": 64, "diagnostics": "summary"}
"""The request whose compute time is watched: small network, so a slower OpenMP barrier shows at once."""
PROBES: tuple[tuple[str, str, str, dict[str, Any] | None], ...] = (
    ("mh, traces, n = 1024", "POST", "/v1/samples/mh",
     {"model": "gaussians25", "n": 1024, "steps": 640, "diagnostics": "traces"}),
    ("rep, traces, png, n = 512", "POST", "/v1/samples/rep",
     {"model": "digits-dcgan", "n": 512, "steps": 8, "diagnostics": "traces", "output": "png"}),
    ("raw, JSON arrays, n = 1024", "POST", "/v1/samples/raw", {"model": "digits-dcgan", "n": 1024, "output": "array"}),
    ("sir, chains, npz, n = 1024", "POST", "/v1/samples/sir",
     {"model": "digits-dcgan", "n": 1024, "steps": 16, "diagnostics": "chains"}),
    ("GET /v1/models", "GET", "/v1/models", None),
    ("drs, gamma_shift (a pilot batch)", "POST", "/v1/samples/drs",
     {"model": "digits-dcgan", "n": 4, "steps": 50, "options": {"gamma_shift": True}}),
)
"""Requests that do more than the timed one: large bodies of every format and diagnostics level, the model list
(which builds each sampler to report its exactness), and sampler options whose constructor runs the networks."""


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def run_probes(models_dir: Path, reps: int, fresh: bool = False) -> list[dict[str, Any]]:
    """One row per probe: compute_before_s / compute_after_s (medians of ``reps`` timed requests) and the server's
    threads before and after it. ``fresh``: a new server for each probe, so that each one's effect shows alone
    (in one server, the first probe that leaves a team behind hides what the later ones would do)."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        for name in MODELS:
            shutil.copytree(models_dir / name, root / name)
        groups = [[p] for p in PROBES] if fresh else [list(PROBES)]
        for i, probes in enumerate(groups):
            rows += _probe_server(root, Path(tmp) / f"data{i}", probes, reps)
    return rows


def _probe_server(root: Path, data: Path, probes: Sequence[tuple[str, str, str, dict[str, Any] | None]],
                  reps: int) -> list[dict[str, Any]]:
    import httpx

    rows: list[dict[str, Any]] = []
    proc, url = start_server(root, data)
    try:
        with httpx.Client(timeout=600) as client:

            def timed() -> float:
                times = []
                for _ in range(reps):
                    r = client.post(f"{url}/v1/samples/rep", json=TIMED)
                    r.raise_for_status()
                    times.append(float(r.json()["timing"]["compute_s"]))
                return median(times)

            timed()  # warm-up: the pool, the worker's own team
            for label, method, path, body in probes:
                before, t_before = timed(), _threads(proc.pid)
                npz = body is not None and body.get("diagnostics") == "chains"
                r = client.request(method, f"{url}{path}", json=None if body is None else {**body, "seed": 2},
                                   headers={"accept": "application/x-npz"} if npz else {})
                if r.status_code != 200:
                    raise RuntimeError(f"{label}: HTTP {r.status_code}: {r.text[:300]}")
                after, t_after = timed(), _threads(proc.pid)
                rows.append({"probe": label, "compute_before_s": before, "compute_after_s": after,
                             "threads_before": t_before, "threads_after": t_after})
                print(f"{label}: {after / before:.2f}x, threads {t_before} -> {t_after}", file=sys.stderr)
    finally:
        stop_server(proc)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=REPS, help="timed requests before and after each probe")
    p.add_argument("--fresh", action="store_true", help="a new server for each probe (each probe's effect alone)")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    import torch

    info = machine_info(torch.device("cpu"))
    rows = run_probes(args.models_dir, args.reps, args.fresh)
    table = [[r["probe"], fmt(r["compute_before_s"] * 1e3), fmt(r["compute_after_s"] * 1e3),
              f"{r['compute_after_s'] / r['compute_before_s']:.2f}", r["threads_before"], r["threads_after"]]
             for r in rows]
    text = "\n".join([
        "## Machine", "", info_block(info), "",
        f"## rep on gaussians25 (n = 256, 64 steps): server compute, median of {args.reps}, around each probe"
        + (" (a new server for each)" if args.fresh else " (one server)"), "",
        markdown_table(["probe request", "compute ms before", "after", "after / before", "server threads before",
                        "after"], table), "",
    ])
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
