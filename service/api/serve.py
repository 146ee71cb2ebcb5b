"""``gansampler-server serve``: run the HTTP API with uvicorn.

With no flags it serves the registry at ``models/`` on CPU at 127.0.0.1:8000. Flags override the ``GANSAMPLER_*``
environment, which overrides the defaults of :mod:`service.config`.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

HELP = "serve the HTTP API (sampling, models, jobs, admin, health, metrics) over a model registry"
DEFAULT_LOG_LEVEL = "info"
HTTP_PARSERS = {"auto": None, "h11": "h11", "httptools": "httptools"}  # choice -> module it needs
EVENT_LOOPS = {"auto": None, "asyncio": None, "uvloop": "uvloop"}
SHUTDOWN_MARGIN_S = 5.0  # uvicorn's own grace beyond shutdown_grace_s: the 503s of the last requests get written
LOCK_FILE = "server.lock"


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
    """The settings, or a ConfigError naming each flag or GANSAMPLER_* variable that is wrong (or unknown)."""
    from service.config import SERVE_FLAGS, load_settings

    overrides: dict[str, Any] = {}
    for field, flag in SERVE_FLAGS.items():
        value = getattr(args, flag.removeprefix("--").replace("-", "_"), None)
        if value is not None:
            overrides[field] = value
    return load_settings(overrides)


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


class ServeError(Exception):
    """A startup problem the operator must fix: printed as one line, exit status 2."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """An exclusive lock on ``data_dir`` for this process's life (the returned file; the OS drops the lock when the
    process ends, however it ends). Two servers on one data dir would each take the other's running jobs for
    a crashed server's and run them, and its queued jobs, twice."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        f = open(data_dir / LOCK_FILE, "a+")  # noqa: SIM115 (held open: it is the lock)
    except OSError as exc:
        raise ServeError(f"data dir {str(data_dir)!r} (--data-dir / GANSAMPLER_DATA_DIR) is not usable: "
                         f"{exc.strerror or exc}") from None
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one server per data dir is the operator's to keep
        return f
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        owner = f.read().strip() or "another process"
        f.close()
        raise ServeError(f"data dir {str(data_dir)!r} (--data-dir / GANSAMPLER_DATA_DIR) is in use by {owner}: "
                         "one server per data dir (give this one its own)") from None
    f.seek(0)
    f.truncate()
    f.write(f"gansampler-server pid {os.getpid()}\n")
    f.flush()
    return f


def bind_listener(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any model loads: a port in use is a one-line error, not a failure after
    minutes of loading (and, when uvicorn binds late, a crash of the threads the load started)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port} (--host / GANSAMPLER_HOST): {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} (--host / GANSAMPLER_HOST, --port / GANSAMPLER_PORT): "
                         f"{exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def graceful_server(config: Any, drain: Callable[[], Awaitable[None]]) -> Any:
    """A uvicorn server that, on SIGTERM or SIGINT, first runs ``drain`` (the app stops taking work and answers what
    does not finish within the grace with a JSON 503), then closes connections as uvicorn does, and exits 0."""
    import uvicorn

    class GracefulServer(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await drain()
            await super().shutdown(sockets)
            # uvicorn re-raises the caught signal after serving, which ends the process with 128 + signal (143 for
            # SIGTERM) although the shutdown completed: a supervisor would read a crash
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    return GracefulServer(config)


def run(args: argparse.Namespace) -> int:
    import sys

    import uvicorn

    from service.api.app import create_app
    from service.api.logs import log_config
    from service.config import ConfigError

    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"serve: {line}", file=sys.stderr)
        return 2
    problem = missing_module(args) or device_problem(settings.devices)
    if problem is not None:
        print(f"serve: {problem}", file=sys.stderr)
        return 2
    try:
        lock = lock_data_dir(settings.data_dir)
        sock = bind_listener(settings.host, settings.port)
    except ServeError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    apply_process_settings(settings)
    app = create_app(settings)

    async def drain() -> None:
        services = getattr(app.state, "services", None)
        if services is not None:
            await services.drain(settings.shutdown_grace_s)

    config = uvicorn.Config(app, log_level=args.log_level, http=getattr(args, "http", "auto"),
                            loop=getattr(args, "loop", "auto"), log_config=log_config(args.log_level),
                            access_log=False, timeout_graceful_shutdown=settings.shutdown_grace_s + SHUTDOWN_MARGIN_S)
    host, port = sock.getsockname()[:2]
    logging.getLogger(__name__).info(
        "listening on http://%s:%d (models %s, device %s, data dir %s, API keys %s, admin API %s)",
        f"[{host}]" if ":" in host else host, port, settings.models_dir, ",".join(settings.devices),
        settings.data_dir, f"on ({len(settings.api_keys)})" if settings.api_keys else "off (no auth)",
        "on" if settings.admin_token else "off")
    try:
        graceful_server(config, drain).run(sockets=[sock])
    finally:
        sock.close()
        lock.close()
    return 0
