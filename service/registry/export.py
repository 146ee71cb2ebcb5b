"""torch.export archives (``.pt2``) from a network and an input shape, with a dynamic batch dimension.

A user ships such an archive instead of a Python class (``format = "torch_export"``); gradients flow through the
loaded ``.module()``, so every sampler runs on it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

EXPORT_EXAMPLE_BATCH = 2  # batch sizes 0 and 1 are specialised by torch.export; trace with 2
EXPORT_MAX_BATCH = 1 << 16
EXPORT_MESSAGE_CHARS = 600  # torch.export's messages run to pages; the start says what failed


class ExportError(RuntimeError):
    """The network could not be exported for inputs (B, *sample_shape). ``ran``: whether it ran eagerly on the
    example input (False: the input shape is the likely culprit)."""

    def __init__(self, message: str, sample_shape: tuple[int, ...], ran: bool) -> None:
        super().__init__(message)
        self.sample_shape = sample_shape
        self.ran = ran


@contextlib.contextmanager
def quiet_torch_logs(level: int = logging.ERROR) -> Iterator[None]:
    """Raise every ``torch.*`` logger to ``level`` for the block. torch.export's tracer logs warnings about the
    user's code (symbolic shapes, guards) through handlers bound to the process's stderr, so redirecting
    ``sys.stderr`` does not catch them; what failed is in the exception."""
    manager = logging.Logger.manager
    loggers = [logging.getLogger("torch")] + [
        lg for name, lg in list(manager.loggerDict.items())
        if name.startswith("torch.") and isinstance(lg, logging.Logger)
    ]
    before = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(level, lg.level))
    try:
        yield
    finally:
        for lg, old in before:
            lg.setLevel(old)


def export_network(net: nn.Module, sample_shape: tuple[int, ...], out: Path | str) -> Path:
    """Export ``net`` (put in eval mode) for inputs (B, *sample_shape), B in [1, EXPORT_MAX_BATCH]; returns ``out``.

    The network first runs eagerly on an example batch, so a wrong ``sample_shape`` is reported as such
    (:class:`ExportError` with ``ran=False``) rather than as a failure deep inside tracing.
    """
    net = net.eval()
    example = torch.randn(EXPORT_EXAMPLE_BATCH, *sample_shape)
    shape = tuple(example.shape)
    with torch.no_grad():
        try:
            net(example)
        except Exception as exc:  # any failure of the user's network
            raise ExportError(f"the network fails on an input of shape {shape}: {exc}", sample_shape, False) from exc
        batch = torch.export.Dim("batch", min=1, max=EXPORT_MAX_BATCH)
        try:
            with quiet_torch_logs():
                program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
        except Exception as exc:  # torch.export raises many types
            message = " ".join(str(exc).split())[:EXPORT_MESSAGE_CHARS]
            raise ExportError(
                f"torch.export failed on an input of shape {shape} (the network runs on it eagerly): "
                f"{type(exc).__name__}: {message}",
                sample_shape,
                True,
            ) from exc
    out = Path(out)
    torch.export.save(program, str(out))
    return out
