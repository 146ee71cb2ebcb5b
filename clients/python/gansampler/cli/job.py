"""``gansampler job create|list|status|wait|result|cancel|events``: long runs on the server's job queue."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from .._constants import DEFAULT_POLL_INTERVAL_S
from .._exceptions import ConflictError
from .._models import JobList, JobStatus
from .._progress import format_bar
from ._common import (
    DEFAULT_OUT_DIR,
    EXIT_JOB_FAILED,
    EXIT_OK,
    Handler,
    add_sampling_arguments,
    format_table,
    make_client,
    print_json,
    sampling_kwargs,
    write_batch,
)

HELP = "long runs: create a job, list jobs, follow its progress, fetch its result, cancel it"
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")


def _status_line(status: JobStatus) -> str:
    line = f"{status.id}  {status.state}  {format_bar(status.progress)}"
    if status.steps_done is not None and status.steps_total:
        line += f"  {status.steps_done}/{status.steps_total} steps"
    if status.error:
        line += f"  error: {status.error}"
    return line


def _add_wait_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=DEFAULT_POLL_INTERVAL_S,
        help=f"seconds between polls (default {DEFAULT_POLL_INTERVAL_S:g})",
    )
    parser.add_argument("--wait-timeout", type=float, default=None, help="give up waiting after this many seconds")


def _add_list_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", action="append", type=parse_states, default=[], metavar="STATE",
                        help=f"only jobs in this state, repeatable or a comma list ({', '.join(JOB_STATES)})")
    parser.add_argument("--limit", type=int, default=None,
                        help="jobs per page (default: the server's, 50; at most 1000)")
    parser.add_argument("--cursor", default=None, help="the page after this one (printed when more jobs follow)")
    parser.add_argument("--all", action="store_true", help="every page, not just the first")
    parser.add_argument("--json", action="store_true", help="print the server's JSON")


def _create(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        job = client.jobs.create(args.model, **sampling_kwargs(args))
        sys.stdout.write(job.id + "\n")
        sys.stdout.flush()
        if not args.wait:
            return EXIT_OK
        status = job.wait(progress=not args.no_progress, poll_interval=args.poll_interval, timeout=args.wait_timeout)
        if status.state != "succeeded":
            sys.stderr.write(_status_line(status) + "\n")
            return EXIT_JOB_FAILED
        if args.out:
            write_batch(job.result(), Path(args.out), sys.stdout)
    return EXIT_OK


def parse_states(text: str) -> list[str]:
    """``--state`` value: one state or a comma list, each checked (a usage error names an unknown one)."""
    states = [s.strip() for s in text.split(",") if s.strip()]
    for state in states:
        if state not in JOB_STATES:
            raise argparse.ArgumentTypeError(f"--state must be one of {', '.join(JOB_STATES)}, got {state!r}")
    return states


def _when(value: datetime | str | None) -> str:
    """A server time to the second, UTC (``2026-01-02T03:04:05Z``); text that is not a time as it came."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return (when.astimezone(UTC) if when.tzinfo is not None else when).strftime("%Y-%m-%dT%H:%M:%SZ")


def _job_row(status: JobStatus) -> list[str]:
    request = status.request or {}
    return [
        status.id,
        str(status.state),
        f"{status.progress * 100:.0f}%",
        str(request.get("model", "?")),
        str(request.get("sampler", "?")),
        str(request.get("n", "?")),
        _when(status.created_at),
    ]


def _list(args: argparse.Namespace) -> int:
    states = [s for group in args.state for s in group] or None
    with make_client(args) as client:
        if args.all:
            page = JobList(jobs=list(client.jobs.list_all(state=states, page_size=args.limit)))
        else:
            page = client.jobs.list(state=states, limit=args.limit, cursor=args.cursor)
    if args.json:
        print_json(page.model_dump(mode="json"), sys.stdout)
        return EXIT_OK
    header = ["JOB", "STATE", "PROGRESS", "MODEL", "SAMPLER", "N", "CREATED"]
    sys.stdout.write(format_table(header, [_job_row(s) for s in page.jobs]) + "\n")
    if page.next is not None:
        sys.stderr.write(f"more jobs: gansampler job list --cursor {page.next} (same --state), or --all\n")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        status = client.jobs.status(args.id)
    if args.json:
        print_json(status.model_dump(mode="json"), sys.stdout)
    else:
        sys.stdout.write(_status_line(status) + "\n")
    return EXIT_OK


def _wait(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        job = client.jobs.get(args.id)
        status = job.wait(progress=not args.no_progress, poll_interval=args.poll_interval, timeout=args.wait_timeout)
    sys.stdout.write(_status_line(status) + "\n")
    return EXIT_OK if status.state == "succeeded" else EXIT_JOB_FAILED


def _result(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        try:
            batch = client.jobs.result(args.id)
        except ConflictError:  # no result: say why, and exit 4 when the job ended without one
            status = client.jobs.status(args.id)
            if status.state in ("queued", "running"):
                raise
            sys.stderr.write(f"gansampler: job {args.id} has no result: {_status_line(status)}\n")
            return EXIT_JOB_FAILED
    write_batch(batch, Path(args.out), sys.stdout)
    return EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        job = client.jobs.cancel(args.id)
    sys.stdout.write(_status_line(job.status) + "\n")
    return EXIT_OK


def _events(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        for status in client.jobs.events(args.id):
            sys.stdout.write(status.model_dump_json() + "\n")
            sys.stdout.flush()
    return EXIT_OK


def add_arguments(parser: argparse.ArgumentParser, parents: list[argparse.ArgumentParser] | None = None) -> None:
    sub = parser.add_subparsers(dest="job_command", metavar="ACTION", required=True)
    parents = parents or []
    handlers: dict[str, tuple[str, Handler]] = {
        "create": ("start a job (prints its id); --wait follows it, -o saves its result", _create),
        "list": ("list jobs, newest first (a page of --limit; --all for every page)", _list),
        "status": ("show a job's state and progress", _status),
        "wait": ("wait for a job with a progress bar; exit 0 iff it succeeded", _wait),
        "result": ("write a finished job's samples to a folder", _result),
        "cancel": ("cancel a running job, or delete a finished one", _cancel),
        "events": ("print the job's server-sent progress events as JSON lines", _events),
    }
    for name, (help_text, handler) in handlers.items():
        p = sub.add_parser(name, help=help_text, description=help_text, parents=parents)
        p.set_defaults(_run=handler)
        if name == "create":
            add_sampling_arguments(p)
            p.add_argument("--wait", action="store_true", help="wait for the job to finish")
            p.add_argument("-o", "--out", default=None, help="with --wait: write the result to this folder")
            _add_wait_flags(p)
            continue
        if name == "list":
            _add_list_flags(p)
            continue
        p.add_argument("id", metavar="JOB_ID")
        if name == "wait":
            _add_wait_flags(p)
        elif name == "status":
            p.add_argument("--json", action="store_true", help="print the job's JSON")
        elif name == "result":
            p.add_argument("-o", "--out", default=DEFAULT_OUT_DIR, help=f"output folder (default {DEFAULT_OUT_DIR}/)")


def run(args: argparse.Namespace) -> int:  # pragma: no cover - dispatch goes to the action's handler
    raise AssertionError("job actions set their own handler")
