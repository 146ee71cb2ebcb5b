"""``gansampler models [NAME]``: list the server's models, or show one with its samplers and parameters."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._models import ModelInfo
from ._common import EXIT_OK, format_table, make_client, print_json

HELP = "list models (every version and its state), or show one model's samplers and parameters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help='show one model ("name" or "name@version")')
    parser.add_argument("--json", action="store_true", help="print the server's JSON")


def _shape(model: ModelInfo) -> str:
    return "x".join(str(d) for d in model.output.shape) if model.output else "?"


def _choice(choice: Any) -> str:
    """An option's allowed value as typed on the command line (JSON literals; numeric ranges as <low..high>)."""
    if isinstance(choice, dict) and choice.get("type") == "number":
        text = f"<{choice.get('low')}..{choice.get('high')}>"
        return text + "|null" if choice.get("nullable") else text
    return choice if isinstance(choice, str) else json.dumps(choice)


def _describe(model: ModelInfo) -> str:
    lines = [f"{model.id}  ({model.state})" + (f": {model.error}" if model.error else "")]
    if model.description:
        lines.append(f"  {model.description}")
    if model.output:
        span = f" in [{model.output.range[0]:g}, {model.output.range[1]:g}]" if model.output.range else ""
        lines.append(f"  output: {model.output.kind} {_shape(model)}{span}")
    if model.latent_shape:
        lines.append(f"  latent: {'x'.join(map(str, model.latent_shape))}")
    if model.calibration:
        c = model.calibration
        scores = ", ".join(f"{k} {v:.3g}" for k, v in (("auc", c.auc), ("ece", c.ece)) if v is not None)
        lines.append(f"  calibration: {c.method}" + (f" ({scores})" if scores else ""))
    for name, info in model.samplers.items():
        if not info.supported:
            lines.append(f"  sampler {name}: unsupported ({info.reason})")
            continue
        head = f"  sampler {name}: {'exact' if info.exact else 'approximate'}"
        lines.append(head + (f", default steps {info.default_steps}" if info.default_steps else ""))
        for p in info.params:
            doc = f"  {p.doc}" if p.doc else ""
            lines.append(
                f"    --param {p.name}=<{p.low:g}..{p.high:g}> (default {p.default:g}){doc}"
                if p.low is not None and p.high is not None and p.default is not None
                else f"    --param {p.name}=NUMBER{doc}"
            )
        for option, choices in info.options.items():
            lines.append(f"    --option {option}={'|'.join(_choice(c) for c in choices)}")
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
