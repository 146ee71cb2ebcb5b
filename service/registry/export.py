"""torch.export archives (``.pt2``) from a network and an input shape, with a dynamic batch dimension.

A user ships such an archive instead of a Python class (``format = "torch_export"``); gradients flow through the
loaded ``.module()``, so every sampler runs on it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

EXPORT_EXAMPLE_BATCH = 2  # batch sizes 0 and 1 are specialised by torch.export; trace with 2
EXPORT_MAX_BATCH = 1 << 16


def export_network(net: nn.Module, sample_shape: tuple[int, ...], out: Path | str) -> Path:
    """Export ``net`` (put in eval mode) for inputs (B, *sample_shape), B in [1, EXPORT_MAX_BATCH]; returns ``out``."""
    net = net.eval()
    example = torch.randn(EXPORT_EXAMPLE_BATCH, *sample_shape)
    batch = torch.export.Dim("batch", min=1, max=EXPORT_MAX_BATCH)
    with torch.no_grad():
        program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    out = Path(out)
    torch.export.save(program, str(out))
    return out
