"""``gansampler-server serve``: run the HTTP API with uvicorn.

With no flags it serves the registry at ``models/`` on CPU at 127.0.0.1:8000. Flags override the ``GANSAMPLER_*``
environment, which overrides the defaults of :mod:`service.config`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "serve the HTTP API (sampling, models, jobs, admin, health, metrics) over a model registry"
DEFAULT_LOG_LEVEL = "info"
HTTP_PARSERS = {"auto": None, "h11": "h11", "httptools": "httptools"}  # choice -> module it needs
EVENT_LOOPS = {"auto": None, "asyncio": None, "uvloop": "uvloop"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", type=Path, default=None, help="registry root (default: $GANSAMPLER_MODELS_DIR or models)")
    p.add_argument("--host", default=None, help="bind address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--device", default=None, help="cpu | cuda:0 | a comma list cuda:0,cuda:1 (default: cpu)")
    p.add_argument("--data-dir", type=Path, default=None, help="jobs database and results (default: .gansampler)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch intra-op threads (default: $GANSAMPLER_TORCH_THREADS or torch's default)")
    p.add_argument("--log-level", default=DEFAULT_LOG_LEVEL, help=f"uvicorn log level (default: {DEFAULT_LOG_LEVEL})")
    p.add_argument("--http", choices=list(HTTP_PARSERS), default="auto",
                   help="HTTP/1.1 parser (default: auto = httptools when installed, else h11)")
    p.add_argument("--loop", choices=list(EVENT_LOOPS), default="auto",
                   help="event loop (default: auto = uvloop when installed, else asyncio)")


def settings_from_args(args: argparse.Namespace) -> Any:
    from service.config import Settings

    overrides: dict[str, Any] = {}
    for flag, field in (("models", "models_dir"), ("host", "host"), ("port", "port"), ("device", "device"),
                        ("data_dir", "data_dir"), ("torch_threads", "torch_threads")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    return Settings(**overrides)


def apply_process_settings(settings: Any) -> None:
    """Process-wide settings that belong to the serving process, not to an app (tests build many apps)."""
    import logging

    if settings.torch_threads is not None:
        import torch

        torch.set_num_threads(settings.torch_threads)
    if settings.malloc_tuning:
        from service.allocator import tune_malloc

        tuning = tune_malloc()
        logging.getLogger(__name__).info("malloc tuning %s: %s", "on" if tuning.applied else "off", tuning.reason)


def missing_module(args: argparse.Namespace) -> str | None:
    """A clear message when ``--http``/``--loop`` names an implementation that is not installed; else None."""
    import importlib.util

    for flag, table in (("http", HTTP_PARSERS), ("loop", EVENT_LOOPS)):
        choice = getattr(args, flag, "auto")
        module = table.get(choice)
        if module is not None and importlib.util.find_spec(module) is None:
            return f"--{flag} {choice}: the {module!r} package is not installed (pip install {module}, or --{flag} auto)"
    return None


def device_problem(devices: tuple[str, ...]) -> str | None:
    """Why a configured device cannot serve on this host (None when all can): checked before anything loads, so the
    setting is named instead of every model failing to load."""
    import torch

    for d in devices:
        dev = torch.device(d)
        if dev.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if (dev.index or 0) >= count:
                return f"device {d!r} (--device / GANSAMPLER_DEVICE) is not available: this host has {count} CUDA " \
                       f"device{'s' if count != 1 else ''}{'' if count else ' (or this torch build has no CUDA)'}"
        elif dev.type == "mps" and not torch.backends.mps.is_available():
            return f"device {d!r} (--device / GANSAMPLER_DEVICE) is not available on this host"
    return None


def run(args: argparse.Namespace) -> int:
    import sys

    import uvicorn

    from service.api.app import create_app

    settings = settings_from_args(args)
    problem = missing_module(args) or device_problem(settings.devices)
    if problem is not None:
        print(f"serve: {problem}", file=sys.stderr)
        return 2
    apply_process_settings(settings)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, timeout_graceful_shutdown=10,
                http=getattr(args, "http", "auto"), loop=getattr(args, "loop", "auto"))
    return 0
