"""The memory allocator as a speed lever: glibc malloc against tcmalloc and jemalloc, preloaded into the process.

PyTorch's CPU tensors come from the C allocator. A sampler allocates and frees the same few megabyte-sized buffers at
every step (activations, proposal blocks), and glibc's malloc hands large ones back to the system and faults their
pages in again. Allocators that keep them (tcmalloc, jemalloc) are a setting of the process, not of the code:
``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 gansampler-server serve``.

This script runs ``benchmarks/speed.py`` in a fresh process per allocator (``LD_PRELOAD``; glibc with its defaults,
and glibc with the thresholds ``gansampler-server serve`` sets, :mod:`service.allocator`), round-robin with the
order reversed every other round, and reports each (model, sampler)'s samples/s and its ceiling's, with the median
over rounds and the speed-up over the system allocator measured in the same round. Allocators whose library is not
installed are skipped (Debian: ``apt-get install libtcmalloc-minimal4 libjemalloc2``).

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/speed_allocator.py --out allocator.md     # ~6 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import fmt, info_block, machine_info, markdown_table, median, write_report

LIBDIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
ALLOCATORS = {
    "system (glibc malloc)": None,
    "glibc tuned (the server's default)": "",
    "tcmalloc": "libtcmalloc_minimal.so.4",
    "jemalloc": "libjemalloc.so.2",
}
"""None: glibc with its defaults; "": glibc with :func:`service.allocator.tune_malloc`; else a library to preload."""
BASELINE = "system (glibc malloc)"
MODELS = ("gaussians25", "digits-dcgan")
SAMPLERS = ("raw", "mh", "rep")
BATCH = 256
ROUNDS = 3
SPEED_ROUNDS = 3
SPEED = Path(__file__).resolve().parent / "speed.py"


def find_library(name: str) -> str | None:
    """The full path of a shared library in the usual system directories, or None."""
    for d in LIBDIRS:
        p = Path(d) / name
        if p.exists():
            return str(p)
    return None


def run_speed(preload: str | None, models: Sequence[str], samplers: Sequence[str], batch: int,
              out: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """(model, sampler) -> (sampler samples/s, ceiling samples/s) of one ``speed.py`` run with ``preload``."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    tuned = preload == ""
    if preload:
        env["LD_PRELOAD"] = preload
    cmd = [sys.executable, str(SPEED), "--models", *models, "--samplers", *samplers, "--batches", str(batch),
           "--rounds", str(SPEED_ROUNDS), "--no-reference", "--malloc", "tuned" if tuned else "system",
           "--json", str(out)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    rows = json.loads(out.read_text())["rows"]
    return {(r["model"], r["sampler"]): (r["sampler_samples_s"], r["ceiling_samples_s"]) for r in rows}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    libs = {name: (lib if not lib else find_library(lib)) for name, lib in ALLOCATORS.items()}
    present = [name for name, lib in ALLOCATORS.items() if not lib or libs[name] is not None]
    missing = [name for name in ALLOCATORS if name not in present]
    runs: dict[str, list[dict[tuple[str, str], tuple[float, float]]]] = {name: [] for name in present}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in present if r % 2 == 0 else list(reversed(present)):
                runs[name].append(run_speed(libs[name], args.models, args.samplers, args.batch, Path(tmp) / "r.json"))
                print(f"round {r + 1}: {name} done", file=sys.stderr, flush=True)
    rows = []
    for model in args.models:
        for sampler in args.samplers:
            key = (model, sampler)
            base = runs[BASELINE]
            for name in present:
                s = [run[key][0] for run in runs[name]]
                c = [run[key][1] for run in runs[name]]
                gain = median([run[key][0] / b[key][0] for run, b in zip(runs[name], base, strict=True)])
                cgain = median([run[key][1] / b[key][1] for run, b in zip(runs[name], base, strict=True)])
                rows.append([model, sampler, args.batch, name, fmt(median(s)), f"{min(s):,.0f}–{max(s):,.0f}",
                             f"{gain:.2f}x", fmt(median(c)), f"{cgain:.2f}x"])
    info = machine_info(torch.device("cpu"))
    text = "\n".join([
        "## Machine", "", info_block(info), "",
        f"## Allocators, batch {args.batch}, {args.rounds} rounds (a fresh `speed.py` process per allocator and round)",
        "",
        "Speed-ups are medians of per-round ratios against the system allocator (same round).",
        "",
        markdown_table(["model", "sampler", "batch", "allocator", "samples/s (median)", "range over rounds",
                        "speed-up", "ceiling samples/s", "ceiling speed-up"], rows),
        "",
        f"Not installed, skipped: {', '.join(missing) or 'none'}.",
        "",
    ])
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
