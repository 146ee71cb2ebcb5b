"""``gansampler models [NAME]``: list the server's models, or show one with its samplers and parameters."""

from __future__ import annotations

import argparse
import sys

from .._models import ModelInfo
from ._common import EXIT_OK, format_table, make_client, print_json

HELP = "list models (every version and its state), or show one model's samplers and parameters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help='show one model ("name" or "name@version")')
    parser.add_argument("--json", action="store_true", help="print the server's JSON")


def _shape(model: ModelInfo) -> str:
    return "x".join(str(d) for d in model.output.shape) if model.output else "?"


def _describe(model: ModelInfo) -> str:
    lines = [f"{model.id}  ({model.state})" + (f": {model.error}" if model.error else "")]
    if model.description:
        lines.append(f"  {model.description}")
    if model.output:
        lines.append(f"  output: {model.output.kind} {_shape(model)} range {model.output.range}")
    if model.latent_shape:
        lines.append(f"  latent: {'x'.join(map(str, model.latent_shape))}")
    if model.calibration:
        c = model.calibration
        lines.append(f"  calibration: {c.method} (auc {c.auc}, ece {c.ece})")
    for name, info in model.samplers.items():
        if not info.supported:
            lines.append(f"  sampler {name}: unsupported ({info.reason})")
            continue
        exact = "exact" if info.exact else "approximate"
        lines.append(f"  sampler {name}: {exact}, default steps {info.default_steps}")
        for p in info.params:
            lines.append(
                f"    --param {p.name}=<{p.low}..{p.high}> (default {p.default})" + (f"  {p.doc}" if p.doc else "")
            )
        for option, choices in info.options.items():
            lines.append(f"    --option {option}={'|'.join(map(str, choices))}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        if args.name:
            model = client.models.get(args.name)
            if args.json:
                print_json(model.model_dump(mode="json"), sys.stdout)
            else:
                sys.stdout.write(_describe(model) + "\n")
            return EXIT_OK
        models = client.models.list()
    if args.json:
        print_json({"models": [m.model_dump(mode="json") for m in models]}, sys.stdout)
        return EXIT_OK
    rows = [
        [
            m.id,
            str(m.state),
            m.output.kind if m.output else "?",
            _shape(m),
            ",".join(name for name, s in m.samplers.items() if s.supported),
        ]
        for m in models
    ]
    sys.stdout.write(format_table(["MODEL", "STATE", "KIND", "SHAPE", "SAMPLERS"], rows) + "\n")
    return EXIT_OK
