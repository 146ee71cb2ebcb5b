"""``gansampler-server``: serve | calibrate | verify | export.

Each subcommand lives in the module that owns its work; that module provides ``HELP: str``,
``add_arguments(parser)`` and ``run(args) -> int``. Imports at the top of those modules stay light.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, str] = {
    "serve": "service.api.serve",
    "calibrate": "service.registry.commands.calibrate",
    "verify": "service.registry.commands.verify",
    "export": "service.registry.commands.export",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gansampler-server", description="Post-hoc sampling service for trained GANs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_path in COMMANDS.items():
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_path.startswith(exc.name):
                continue  # subcommand not installed in this build
            raise
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
