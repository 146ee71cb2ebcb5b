"""``gansampler sample MODEL``: draw samples and write them to a folder.

Writes ``sample_0000.png`` … and ``grid.png`` for image output, ``samples.npy`` (float32, (n, *shape)) for array
output, ``samples.npz`` with ``--npz``, and always ``diagnostics.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._common import DEFAULT_OUT_DIR, EXIT_OK, add_sampling_arguments, make_client, sampling_kwargs, write_batch

HELP = "draw samples from a model and write PNGs + grid.png (or samples.npy) + diagnostics.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sampling_arguments(parser)
    parser.add_argument("-o", "--out", default=DEFAULT_OUT_DIR, help=f"output folder (default {DEFAULT_OUT_DIR}/)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--npz", action="store_true", help="fetch as .npz (samples, z, logit_final) into samples.npz")
    mode.add_argument("--job", action="store_true", help="run as a job (larger n/steps) with a progress bar")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar for --job")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    kwargs = sampling_kwargs(args)
    with make_client(args) as client:
        if args.npz:
            kwargs.pop("output")
            npz = client.samples.create_npz(args.model, **kwargs)
            out.mkdir(parents=True, exist_ok=True)
            npz.save(out / "samples.npz")
            (out / "diagnostics.json").write_text(json.dumps(npz.meta, indent=2) + "\n")
            sys.stdout.write(f"wrote {len(npz.samples)} samples to {out}/samples.npz; seed {npz.seed}\n")
            return EXIT_OK
        if args.job:
            job = client.jobs.create(args.model, **kwargs)
            sys.stderr.write(f"job {job.id} created\n")
            batch = job.result(progress=not args.no_progress)
        else:
            batch = client.samples.create(args.model, **kwargs)
    write_batch(batch, out, sys.stdout)
    return EXIT_OK
