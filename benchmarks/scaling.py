"""How time and peak memory of ``run_chains`` grow with n (chains), steps and image size.

For mh (forward only) and rep (forward + backward w.r.t. z) on the 16x16 digits DCGAN and the 64x64 DCGAN of
pytorch/examples, it runs

- n in ``--ns`` at ``--fixed-steps`` steps (time and memory vs n),
- steps in ``--steps`` at ``--fixed-n`` chains (time and memory vs steps),

and records wall time and the peak memory above the memory in use before the call (CPU: the process's peak RSS,
reset through /proc/self/clear_refs; CUDA: the allocator's peak). Each point is the median of ``--repeats`` calls
(memory: the largest). Writes a markdown table and a PNG plot.

Usage::

    python benchmarks/scaling.py --out benchmarks/scaling_results.md --plot benchmarks/scaling.png   # ~6 min
    python benchmarks/scaling.py --quick
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    DEMO_MODELS,
    PeakMemory,
    fmt,
    info_block,
    machine_info,
    markdown_table,
    median,
    sync,
    write_report,
)
from benchmarks.speed_work import Samplers

MODELS = ("digits-dcgan", "dcgan64")
SAMPLERS = ("mh", "rep")
NS = (16, 64, 256, 1024)
STEPS = (1, 4, 16, 64)
FIXED_STEPS = 4
FIXED_N = 64
REPEATS = 3
MAX_POINT_S = 60.0
"""A series stops growing once one of its calls takes longer than this (the machine's time budget)."""
REPEAT_LIMIT_S = 5.0
"""A point whose first call takes longer than this is not repeated."""


class Grid(NamedTuple):
    ns: tuple[int, ...]
    steps: tuple[int, ...]
    fixed_steps: int
    fixed_n: int
    repeats: int


FULL = Grid(NS, STEPS, FIXED_STEPS, FIXED_N, REPEATS)
QUICK = Grid(ns=(4, 16), steps=(1, 4), fixed_steps=2, fixed_n=4, repeats=1)


@dataclass
class Point:
    model: str
    image: str
    sampler: str
    n: int
    steps: int
    seconds: float
    peak_mib: float

    @property
    def chain_steps_per_s(self) -> float:
        return self.n * (self.steps + 1) / self.seconds


def measure(samplers: Samplers, model: object, sampler: str, n: int, steps: int, repeats: int,
            device: torch.device) -> tuple[float, float]:
    """(median seconds, max peak MiB) of ``run_chains`` with n chains of ``steps`` steps."""
    run = samplers.run_fn(model, sampler, n, steps, device)  # type: ignore[arg-type]
    times: list[float] = []
    peaks: list[float] = []
    for _ in range(repeats):
        if times and times[0] > REPEAT_LIMIT_S:
            break  # one long call is its own average
        gc.collect()
        with PeakMemory(device) as mem:
            t0 = time.perf_counter()
            out = run()
            sync(device)
            times.append(time.perf_counter() - t0)
        del out
        peaks.append(mem.peak_bytes / 2**20)
    return median(times), max(peaks)


def sweep(models: Sequence[str], samplers_: Sequence[str], ns: Sequence[int], steps: Sequence[int],
          fixed_steps: int, fixed_n: int, repeats: int, device: torch.device) -> list[Point]:
    points: list[Point] = []
    samplers = Samplers()
    for name in models:
        model = DEMO_MODELS[name](device)
        with torch.no_grad():
            x = model.pair.generator(torch.zeros(1, *model.pair.latent_shape, device=device))
        image = "x".join(map(str, x.shape[1:]))
        for sampler in samplers_:
            measure(samplers, model, sampler, 2, 1, 1, device)  # warm-up
            vs_n = [(n, fixed_steps) for n in ns]
            vs_steps = [(fixed_n, st) for st in steps if (fixed_n, st) not in vs_n]
            for series in (vs_n, vs_steps):
                for n, st in series:
                    sec, mib = measure(samplers, model, sampler, n, st, repeats, device)
                    points.append(Point(name, image, sampler, n, st, sec, mib))
                    print(f"{name} {sampler} n={n} steps={st}: {sec:.3f} s, {mib:.1f} MiB", file=sys.stderr,
                          flush=True)
                    if sec > MAX_POINT_S:
                        break  # the rest of this series would not fit the time budget
    return points


def table(points: Sequence[Point]) -> str:
    rows = [[p.model, p.image, p.sampler, p.n, p.steps, fmt(p.seconds), fmt(p.chain_steps_per_s), fmt(p.peak_mib),
             fmt(p.peak_mib * 1024 / p.n)] for p in points]
    return markdown_table(["model", "image", "sampler", "n", "steps", "seconds", "chain-steps/s", "peak MiB",
                           "peak KiB / chain"], rows)


def plot(points: Sequence[Point], fixed_steps: int, fixed_n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    series = sorted({(p.model, p.image, p.sampler) for p in points})
    for model, image, sampler in series:
        label = f"{model} ({image}) {sampler}"
        style = "-" if sampler == "mh" else "--"
        vs_n = sorted((p for p in points if (p.model, p.sampler) == (model, sampler) and p.steps == fixed_steps),
                      key=lambda p: p.n)
        vs_s = sorted((p for p in points if (p.model, p.sampler) == (model, sampler) and p.n == fixed_n),
                      key=lambda p: p.steps)
        axes[0].plot([p.n for p in vs_n], [p.seconds for p in vs_n], style, marker="o", label=label)
        axes[1].plot([p.n for p in vs_n], [p.peak_mib for p in vs_n], style, marker="o", label=label)
        axes[2].plot([p.steps for p in vs_s], [p.seconds for p in vs_s], style, marker="o", label=label)
    titles = (f"time vs n ({fixed_steps} steps)", f"peak memory vs n ({fixed_steps} steps)",
              f"time vs steps (n = {fixed_n})")
    ylabels = ("seconds", "peak MiB above baseline", "seconds")
    xlabels = ("n (chains)", "n (chains)", "steps")
    for ax, title, yl, xl in zip(axes, titles, ylabels, xlabels, strict=True):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("run_chains scaling: mh (solid) and rep (dashed), 16x16 vs 64x64 DCGAN")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny grid (a few seconds)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(DEMO_MODELS))
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=("raw", "mh", "rep", "ddls", "sir"))
    p.add_argument("--ns", nargs="+", type=int)
    p.add_argument("--steps", nargs="+", type=int)
    p.add_argument("--fixed-steps", type=int)
    p.add_argument("--fixed-n", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--out", type=Path, help="markdown (default: stdout)")
    p.add_argument("--plot", type=Path, help="PNG plot")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    g = QUICK if args.quick else FULL
    ns = tuple(args.ns or g.ns)
    steps = tuple(args.steps or g.steps)
    fixed_steps = args.fixed_steps or g.fixed_steps
    fixed_n = args.fixed_n or g.fixed_n
    repeats = args.repeats or g.repeats
    device = torch.device(args.device)
    info = machine_info(device)
    points = sweep(args.models, args.samplers, ns, steps, fixed_steps, fixed_n, repeats, device)
    text = "\n".join(["## Machine", "", info_block(info), "",
                      f"## Points (median of {repeats}; peak memory above the memory in use before the call)", "",
                      table(points), ""])
    write_report(text, args.out)
    if args.plot:
        plot(points, fixed_steps, fixed_n, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
