"""Shared pieces of the ``gansampler`` CLI: global flags, the client, ``k=v`` parsing, errors and exit codes."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .._client import Client
from .._constants import DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S, ENV_API_KEY, ENV_BASE_URL, SAMPLERS
from .._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    GansamplerError,
    JobFailedError,
    JobWaitTimeoutError,
)
from .._models import SampleBatch
from .._types import NOT_GIVEN

EXIT_OK = 0
#: The server answered with an error (4xx/5xx), or an unexpected body.
EXIT_API_ERROR = 1
#: Bad command-line usage (argparse's own code).
EXIT_USAGE = 2
#: The server could not be reached or timed out.
EXIT_CONNECTION = 3
#: A job ended failed / cancelled / interrupted, or a wait timed out.
EXIT_JOB_FAILED = 4

DEFAULT_CLI_SAMPLER = "rep"
DEFAULT_CLI_N = 16
DEFAULT_OUT_DIR = "samples"
DIAGNOSTICS_LEVELS = ("none", "summary", "chains", "traces")

Handler = Callable[[argparse.Namespace], int]


def global_options() -> argparse.ArgumentParser:
    """Flags accepted before or after the subcommand (SUPPRESS keeps a later position from resetting them)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument("--url", default=argparse.SUPPRESS, help=f"server URL (default ${ENV_BASE_URL} or local)")
    group.add_argument("--api-key", default=argparse.SUPPRESS, help=f"API key (default ${ENV_API_KEY})")
    group.add_argument(
        "--timeout", type=float, default=argparse.SUPPRESS, help=f"seconds per HTTP attempt ({DEFAULT_TIMEOUT_S:g})"
    )
    group.add_argument(
        "--max-retries",
        type=int,
        default=argparse.SUPPRESS,
        help=f"retries on 429/503/connection errors ({DEFAULT_MAX_RETRIES})",
    )
    return parent


def make_client(args: argparse.Namespace) -> Client:
    return Client(
        getattr(args, "url", None),
        api_key=getattr(args, "api_key", None),
        timeout=getattr(args, "timeout", DEFAULT_TIMEOUT_S),
        max_retries=getattr(args, "max_retries", DEFAULT_MAX_RETRIES),
        transport=getattr(args, "transport", None),
    )


def parse_param(text: str) -> tuple[str, float]:
    """``step_size=0.01`` → ("step_size", 0.01); argparse reports a ValueError/TypeError as a usage error."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--param expects NAME=NUMBER, got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--param {key}: value must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"--param {key}: value must be finite, got {value!r}")
    return key, number


def parse_option(text: str) -> tuple[str, Any]:
    """``init=real`` → ("init", "real"); JSON literals (``true``, ``3``) are decoded, other text kept as is."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option expects NAME=VALUE, got {text!r}")
    try:
        decoded: Any = json.loads(value)
    except json.JSONDecodeError:
        decoded = value
    return key, decoded


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """The sampling request's fields, shared by ``sample`` and ``job create``."""
    parser.add_argument("model", metavar="MODEL", help='model name or "name@version"')
    parser.add_argument(
        "--sampler", default=DEFAULT_CLI_SAMPLER, choices=SAMPLERS, help=f"sampler (default {DEFAULT_CLI_SAMPLER})"
    )
    parser.add_argument(
        "-n",
        "--n",
        dest="n",
        type=int,
        default=DEFAULT_CLI_N,
        help=f"number of samples = chains (default {DEFAULT_CLI_N})",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed (default: chosen by the server, printed)")
    parser.add_argument("--steps", type=int, default=None, help="chain length / candidates / tries")
    parser.add_argument(
        "--param",
        action="append",
        type=parse_param,
        default=[],
        metavar="NAME=NUMBER",
        help="numeric sampler parameter, repeatable (e.g. --param step_size=0.01)",
    )
    parser.add_argument(
        "--option",
        action="append",
        type=parse_option,
        default=[],
        metavar="NAME=VALUE",
        help="categorical sampler option, repeatable (e.g. --option init=real)",
    )
    parser.add_argument(
        "--output",
        choices=("png", "array"),
        default=None,
        help="sample format (default: png for image models, array for vector models)",
    )
    parser.add_argument("--diagnostics", choices=DIAGNOSTICS_LEVELS, default="summary")
    parser.add_argument("--timeout-s", type=float, default=None, help="server-side deadline in seconds")


def sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``samples.create`` / ``jobs.create`` from parsed flags (absent → NOT_GIVEN)."""

    def given(value: Any) -> Any:
        return NOT_GIVEN if value is None else value

    return {
        "sampler": args.sampler,
        "n": args.n,
        "seed": given(args.seed),
        "steps": given(args.steps),
        "params": dict(args.param) or NOT_GIVEN,
        "options": dict(args.option) or NOT_GIVEN,
        "output": given(args.output),
        "diagnostics": given(args.diagnostics),
        "timeout_s": given(args.timeout_s),
    }


def describe_batch(batch: SampleBatch) -> str:
    """One line: model, sampler, seed, steps, acceptance rate and time."""
    parts = [f"model {batch.model}", f"sampler {batch.sampler}", f"seed {batch.seed}"]
    if batch.steps is not None:
        parts.append(f"steps {batch.steps}")
    if batch.diagnostics is not None and batch.diagnostics.acceptance_rate is not None:
        parts.append(f"acceptance {batch.diagnostics.acceptance_rate:.3f}")
    parts.append(f"{batch.timing.total_s:.2f} s")
    return ", ".join(parts)


def write_batch(batch: SampleBatch, out: Path, stdout: TextIO) -> None:
    written = batch.save(out)
    names = ", ".join(p.name for p in written if not p.name.startswith("sample_"))
    n_files = sum(p.name.startswith("sample_") for p in written)
    files = f"{n_files} sample files, {names}" if n_files else names
    stdout.write(f"wrote {batch.n} samples to {out}/ ({files}); {describe_batch(batch)}\n")


def run_guarded(handler: Handler, args: argparse.Namespace, stderr: TextIO | None = None) -> int:
    """Run a subcommand; map SDK errors to a message on stderr and an exit code (see ``EXIT_*``)."""
    stderr = stderr if stderr is not None else sys.stderr
    try:
        return handler(args)
    except JobFailedError as exc:
        stderr.write(f"gansampler: {exc}\n")
        return EXIT_JOB_FAILED
    except JobWaitTimeoutError as exc:
        stderr.write(f"gansampler: {exc}\n")
        return EXIT_JOB_FAILED
    except APITimeoutError:
        timeout = getattr(args, "timeout", DEFAULT_TIMEOUT_S)
        stderr.write(f"gansampler: no response within {timeout:g} s (--timeout); the server may still be working: "
                     "raise --timeout, or run long work as a job (gansampler job create ... --wait)\n")
        return EXIT_CONNECTION
    except APIConnectionError as exc:
        url = getattr(args, "url", None) or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
        stderr.write(f"gansampler: cannot reach {url}: {exc.message}\n")
        return EXIT_CONNECTION
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as line-printing tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush cannot fail again
        return EXIT_OK
    except APIError as exc:
        stderr.write(f"gansampler: error: {exc}\n")
        return EXIT_API_ERROR
    except GansamplerError as exc:
        stderr.write(f"gansampler: {exc}\n")
        return EXIT_API_ERROR


def print_json(data: Any, stdout: TextIO) -> None:
    stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in (header, *rows)
    ]
    return "\n".join(lines)
