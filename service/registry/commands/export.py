"""``gansampler-server export``: a state_dict + architecture -> a torch.export archive (.pt2) shipped without classes."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

HELP = "turn a state_dict (.pth or .safetensors) and its architecture into a torch.export .pt2 archive"


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return dims


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", required=True, help="import path 'package.module:Class' of the network")
    p.add_argument("--kwargs", default="{}", help="constructor keyword arguments as JSON (default: {})")
    p.add_argument(
        "--weights", type=Path, required=True, help="state_dict file: .safetensors, or .pth/.pt (weights only)"
    )
    p.add_argument(
        "--input-shape", type=_shape, required=True, help="one input without batch dim, e.g. 100,1,1 or 3,64,64"
    )
    p.add_argument("--out", type=Path, required=True, help="output archive, e.g. generator.pt2")


def run(args: argparse.Namespace) -> int:
    from safetensors import SafetensorError

    from service.registry.errors import RegistryError
    from service.registry.export import EXPORT_EXAMPLE_BATCH, ExportError, export_network
    from service.registry.files import sha256_file
    from service.registry.loaders import import_arch, load_state_dict_file

    try:
        kwargs = json.loads(args.kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        print(f"export: --kwargs must be a JSON object, got {args.kwargs!r} ({exc})", file=sys.stderr)
        return 1
    try:
        cls = import_arch(args.arch, args.weights, "--arch")
        net = cls(**kwargs)
        if args.weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            weights = load_file(str(args.weights))
        else:
            weights = load_state_dict_file(args.weights, args.weights, "--weights")
        net.load_state_dict(weights)
        torch_output = io.StringIO()  # torch.export prints a partial graph on failure; our message says what failed
        with contextlib.redirect_stderr(torch_output):
            export_network(net, args.input_shape, args.out)
        sys.stderr.write(torch_output.getvalue())
    except ExportError as exc:
        shape = ",".join(map(str, args.input_shape))
        hint = (
            f"; --input-shape {shape} gives that shape with a batch of {EXPORT_EXAMPLE_BATCH}: --input-shape is one "
            "input without the batch dimension, the latent shape for a generator (e.g. 16, or 100,1,1) and the "
            "sample shape for a discriminator (e.g. 1,8,8)"
            if not exc.ran
            else ""
        )
        print(f"export: {exc}{hint}", file=sys.stderr)
        return 1
    except (RegistryError, SafetensorError, OSError, RuntimeError, TypeError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    print('format = "torch_export"')
    print(f'file = "{args.out.name}"')
    print(f'sha256 = "{sha256_file(args.out)}"')
    return 0
