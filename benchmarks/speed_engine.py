"""The engine's cost per request: one request through a chain pool next to the same work through ``run_chains``.

A served request runs in a :class:`~service.engine.pool.ChainPool` (admit, pool steps, retire, assemble: what the
device worker does for it) instead of the driver loop of ``run_chains``. Both are timed here on the same registry
model, sampler, batch, steps, params and seed, interleaved round by round in one process, with each timed call
repeated until it lasts about ``--target-s``. ``ratio`` = pool samples/s / ``run_chains`` samples/s, the median of
per-round pairs; ``engine ms`` is the difference per request (what admission, pool bookkeeping, retirement and
assembly add). What this leaves out is in ``speed_http.py``: the worker thread's hand-offs, metrics, HTTP and encoding.

Usage::

    python benchmarks/speed_engine.py                                   # MLP and digits, every sampler, n = 256
    python benchmarks/speed_engine.py --models gaussians25 --samplers raw mh --batch 1024 --steps 64
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    DEFAULT_MODELS_DIR,
    DemoModel,
    fmt,
    info_block,
    interleaved,
    machine_info,
    markdown_table,
    median,
    paired_ratio,
    registry_model,
    repeated,
    timed,
    write_report,
)
from benchmarks.speed_work import SEED, Samplers
from service.allocator import tune_malloc
from service.engine.pool import Admission, ChainPool
from service.engine.ticket import ChainResult, PoolKey, Ticket, Work

MODELS = ("gaussians25", "digits-dcgan")
SAMPLERS = ("raw", "mh", "rep", "ddls", "drs", "sir")
BATCH = 256
STEPS = 64
ROUNDS = 7
TARGET_S = 0.05
"""Each timed call repeats the request until it lasts about this long (a raw request on the MLP takes 0.5 ms)."""


def pool_fn(samplers: Samplers, model: DemoModel, sampler: str, batch: int, steps: int,
            device: torch.device) -> Callable[[], ChainResult]:
    """One request of ``batch`` chains through a fresh chain pool, as the device worker runs it alone."""
    algo = samplers.algo(model, sampler)
    params = samplers.param_values(model, sampler)

    def run() -> ChainResult:
        ticket = Ticket(Work(PoolKey(model.name, sampler, None, str(device)), algo, batch, SEED, steps, params))
        pool = ChainPool(ticket.work.key, algo)
        pool.admit([Admission(ticket, 0, batch)])
        done, _ = pool.retire()
        while not done:
            pool.step()
            done, _ = pool.retire()
        return done[0].assemble(time.monotonic())

    return run


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--steps", type=int, default=STEPS, help="chain length (raw: always 0)")
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--target-s", type=float, default=TARGET_S)
    p.add_argument("--device", default="cpu")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    tune_malloc()  # as `gansampler-server serve` does
    dev = torch.device(args.device)
    info = machine_info(dev)
    samplers = Samplers()
    rows = []
    for name in args.models:
        model = registry_model(name, dev, args.models_dir)
        if model is None:
            raise SystemExit(f"no registry model {name!r} under {args.models_dir}")
        for sampler in args.samplers:
            steps = 0 if sampler == "raw" else args.steps
            fns = {"run_chains": samplers.run_fn(model, sampler, args.batch, steps, dev),
                   "pool": pool_fn(samplers, model, sampler, args.batch, steps, dev)}
            once = max(timed(fn, dev) for fn in fns.values())  # also the warm-up
            inner = max(1, round(args.target_s / max(once, 1e-6)))
            times = interleaved({k: repeated(fn, inner) for k, fn in fns.items()}, args.rounds, dev, warmup=False)
            driver, pool = (median(times[k]) / inner for k in ("run_chains", "pool"))
            ratio = paired_ratio(times["run_chains"], times["pool"])
            rows.append([name, sampler, args.batch, steps, inner, fmt(driver * 1e3), fmt(pool * 1e3),
                         fmt((pool - driver) * 1e3), f"{ratio:.2f}"])
            print(f"{name} {sampler}: pool / run_chains {ratio:.2f}", file=sys.stderr, flush=True)
    text = "\n".join([
        "## Machine", "", info_block(info), "",
        f"## One request through a chain pool vs run_chains, median of {args.rounds} interleaved rounds", "",
        markdown_table(["model", "sampler", "n", "steps", "calls per timing", "run_chains ms", "pool ms",
                        "engine ms", "ratio"], rows), "",
    ])
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
