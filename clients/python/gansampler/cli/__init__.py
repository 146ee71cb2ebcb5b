"""``gansampler``: command-line client of a gansampler server.

::

    gansampler models
    gansampler limits
    gansampler sample digits-dcgan --sampler rep -n 64 -o out/ --seed 7 --param step_size=0.01
    gansampler job create digits-dcgan --sampler rep -n 1024 --steps 5000 --wait -o out/
    gansampler job list [--state running,queued] [--limit 20] [--all]
    gansampler job status|wait|result|cancel|events JOB_ID

``--url`` / ``--api-key`` (or ``$GANSAMPLER_URL`` / ``$GANSAMPLER_API_KEY``) pick the server. Exit codes:
0 ok, 1 the server answered an error (its type, message and param are printed), 2 usage, 3 server unreachable,
4 a job failed or a wait timed out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import httpx

from .._constants import __version__
from . import job, limits, models, sample
from ._common import EXIT_USAGE, global_options, run_guarded

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    common = global_options()
    parser = argparse.ArgumentParser(
        prog="gansampler",
        description="Client of a gansampler server: sample from trained GANs over HTTP.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"gansampler {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in (("models", models), ("sample", sample), ("limits", limits)):
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[common])
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    p = sub.add_parser("job", help=job.HELP, description=job.HELP, parents=[common])
    job.add_arguments(p, parents=[common])
    return parser


def main(argv: Sequence[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    """Run the CLI; returns the exit code. ``transport`` replaces the network (tests, embedding)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.transport = transport
    handler = getattr(args, "_run", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return run_guarded(handler, args)


if __name__ == "__main__":
    sys.exit(main())
