"""``gansampler limits``: the limits the server enforces on requests and jobs (``GET /v1/limits``)."""

from __future__ import annotations

import argparse
import sys

from ._common import EXIT_OK, format_table, make_client, print_json

HELP = "show the limits the server enforces on requests and jobs (n, steps, n x steps, sizes, queues)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the server's JSON")


def _value(value: object) -> str:
    return "none" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:g}"


def run(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        limits = client.limits.get()
    if args.json:
        print_json(limits.model_dump(mode="json"), sys.stdout)
        return EXIT_OK
    requests, jobs = limits.requests.model_dump(), limits.jobs.model_dump()
    names = list(dict.fromkeys([*requests, *jobs]))
    rows = [[name, _value(requests[name]) if name in requests else "-", _value(jobs[name]) if name in jobs else "-"]
            for name in names]
    sys.stdout.write(format_table(["LIMIT", "REQUESTS", "JOBS"], rows) + "\n")
    return EXIT_OK
