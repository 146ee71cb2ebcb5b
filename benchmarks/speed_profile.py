"""Where the samplers lose against their ceiling: per-step overhead with the networks taken out, its parts, and the
aten op count per step.

1. Overhead per step: ``run_chains`` on a *null pair* (G(z) = z, D(x) = x[:, 0]: no network cost), so the time per
   step is the sampler's own cost (random numbers, accept test, state updates, driver bookkeeping, autograd).
2. Parts: the same building blocks timed alone (``rng.normal`` for the latent, ``rng.uniform``, the accept test,
   the driver's ``tree_where`` / ``update_stats``).
3. Ops: aten operators launched per step (torch.profiler), the top ones by self CPU time, and host syncs
   (``aten::_local_scalar_dense``: ``bool(tensor)`` / ``int(tensor)`` / ``.item()``).

Usage::

    python benchmarks/speed_profile.py                         # about 1-2 minutes on 2 cores
    python benchmarks/speed_profile.py --batches 1 256 --latent 64 1 1 --out /tmp/profile.md
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import fmt, info_block, interleaved, machine_info, markdown_table, median, write_report
from service.samplers import SAMPLERS
from service.samplers.base import GanPair, tree_where
from service.samplers.driver import init_stats, run_chains, update_stats
from service.samplers.kernel import accept_test
from service.samplers.rng import Streams, normal, uniform

SAMPLERS_PROFILED = ("raw", "mh", "rep", "ddls", "drs", "sir")
BATCHES = (1, 64, 256, 1024)
LATENTS = ((2,), (64, 1, 1), (100, 1, 1))
STEPS = 32
ROUNDS = 5
PROFILE_BATCH = 256
PART_REPS = 50


def null_pair(latent: tuple[int, ...]) -> GanPair:
    """G(z) = z (same shape), D(x) = first coordinate: both differentiable, both (nearly) free."""

    def generator(z: Tensor) -> Tensor:
        return z * 1.0

    def logit(x: Tensor) -> Tensor:
        return x.flatten(1)[:, 0]

    return GanPair(generator, logit, latent)


def _algo(pair: GanPair, sampler: str) -> object:
    entry = SAMPLERS[sampler]
    opts = {"logit_max": 3.0} if sampler == "drs" else {}  # no pilot batch; accepts within a few tries
    return entry.cls(pair, entry.options_cls.from_dict(opts))


def _n_steps(sampler: str) -> int:
    return 0 if sampler == "raw" else STEPS


def run_fn(pair: GanPair, sampler: str, batch: int) -> Callable[[], object]:
    algo = _algo(pair, sampler)

    def run() -> object:
        params = algo.make_params({}, batch, "cpu")  # type: ignore[attr-defined]
        return run_chains(algo, Streams.for_request(7, batch), params, _n_steps(sampler))

    return run


def overhead_table(batches: Sequence[int], latents: Sequence[tuple[int, ...]]) -> str:
    """Microseconds per chain step (per call for raw) of run_chains on the null pair."""
    rows = []
    dev = torch.device("cpu")
    for latent in latents:
        pair = null_pair(latent)
        for batch in batches:
            fns = {s: run_fn(pair, s, batch) for s in SAMPLERS_PROFILED}
            times = interleaved(fns, ROUNDS, dev)
            cells = []
            for s in SAMPLERS_PROFILED:
                steps = max(1, _n_steps(s))
                cells.append(fmt(median(times[s]) / steps * 1e6))
            rows.append(["x".join(map(str, latent)), batch, *cells])
    return markdown_table(["latent", "batch", *(f"{s} µs/step" for s in SAMPLERS_PROFILED)], rows)


def _many(f: Callable[[], object]) -> Callable[[], None]:
    def call() -> None:
        for _ in range(PART_REPS):
            f()

    return call


def parts_table(batches: Sequence[int], latent: tuple[int, ...]) -> str:
    """Microseconds per call of the building blocks every step uses."""
    dev = torch.device("cpu")
    rows = []
    for batch in batches:
        st = Streams.for_request(7, batch)
        t = torch.full((batch,), 5, dtype=torch.int64)
        la = torch.randn(batch)
        ok = torch.ones(batch, dtype=torch.bool)
        u = uniform(st, t, 2)
        pair = null_pair(latent)
        algo = _algo(pair, "mh")
        params = algo.make_params({}, batch, dev)  # type: ignore[attr-defined]
        state = algo.init(st, params)  # type: ignore[attr-defined]
        _, info = algo.step(state, st, params, t)  # type: ignore[attr-defined]
        stats = init_stats(algo, state)
        x = torch.randn(batch, *latent)

        fns: dict[str, Callable[[], object]] = {
            "rng.normal(latent)": partial(normal, st, t, 1, latent),
            "rng.uniform()": partial(uniform, st, t, 2),
            "accept_test": partial(accept_test, la, ok, ok, u),
            "tree_where(MhState)": partial(tree_where, ok, state, state),
            "update_stats": partial(update_stats, stats, info, ok),
            "mh step": partial(algo.step, state, st, params, t),  # type: ignore[attr-defined]
            "torch.randn(latent) (for scale)": partial(torch.randn_like, x),
        }
        times = interleaved({k: _many(f) for k, f in fns.items()}, ROUNDS, dev)
        rows.append([batch, *(fmt(median(times[k]) / PART_REPS * 1e6) for k in fns)])
    return markdown_table(["batch", *(f"{k} µs" for k in fns)], rows)


def ops_table(batch: int, latent: tuple[int, ...]) -> tuple[str, str]:
    """aten ops and host syncs per step, and the top ops by self CPU time, for each sampler on the null pair."""
    from torch.profiler import ProfilerActivity, profile

    pair = null_pair(latent)
    rows = []
    top_rows = []
    for s in SAMPLERS_PROFILED:
        run = run_fn(pair, s, batch)
        run()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        events = [e for e in prof.events() if e.name.startswith("aten::")]
        steps = max(1, _n_steps(s))
        # count top-level aten ops only (an op calling another op counts once)
        top = [e for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
        syncs = sum(1 for e in events if e.name == "aten::_local_scalar_dense")
        rows.append([s, fmt(len(top) / steps), fmt(syncs / steps, 2)])
        self_us: Counter[str] = Counter()
        for e in events:
            self_us[e.name] += e.self_cpu_time_total
        total = sum(self_us.values()) or 1.0
        top_rows.append([s, ", ".join(f"{n[6:]} {100 * v / total:.0f}%" for n, v in self_us.most_common(6))])
    return (
        markdown_table(["sampler", "aten ops / step", "host syncs / step"], rows),
        markdown_table(["sampler", "top aten ops by self CPU time"], top_rows),
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    p.add_argument("--latent", nargs="+", type=int, help="one latent shape (default: 2, 64x1x1 and 100x1x1)")
    p.add_argument("--threads", type=int)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    latents = [tuple(args.latent)] if args.latent else list(LATENTS)
    info = machine_info(torch.device("cpu"))
    ops, top = ops_table(PROFILE_BATCH, latents[-1])
    text = "\n".join([
        "## Machine", "", info_block(info), "",
        f"## Overhead per step on a null pair (no network), {STEPS} steps, median of {ROUNDS}", "",
        overhead_table(args.batches, latents), "",
        f"## Building blocks, latent {'x'.join(map(str, latents[-1]))}", "",
        parts_table(args.batches, latents[-1]), "",
        f"## aten ops per step, batch {PROFILE_BATCH}, latent {'x'.join(map(str, latents[-1]))}", "",
        ops, "", top, "",
    ])
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
