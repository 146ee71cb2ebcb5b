"""Writing a gansampler registry entry from your own code: the held-out split, the sha256 of each file, model.toml.

Needs only the standard library, torch and safetensors (no gansampler import): copy it into your project.
Layout written: ``<root>/<name>/<version>/{model.toml, <weights>, holdout.safetensors}``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import save_file

HOLDOUT_FILE = "holdout.safetensors"
HOLDOUT_KEY = "x"  # the tensor name gansampler reads from the holdout file


def sha256_file(path: Path) -> str:
    """Lower-case hex sha256 of a file (what ``sha256sum FILE`` prints first)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def version_dir(root: Path | str, name: str, version: int = 1) -> Path:
    """``<root>/<name>/<version>``, created (empty or not)."""
    vdir = Path(root) / name / str(version)
    vdir.mkdir(parents=True, exist_ok=True)
    return vdir


def save_holdout(vdir: Path, x: torch.Tensor) -> str:
    """Held-out REAL samples (N, *output_shape) in G's output range, never trained on -> ``holdout.safetensors``."""
    save_file({HOLDOUT_KEY: x.detach().to(torch.float32).contiguous()}, str(vdir / HOLDOUT_FILE))
    return HOLDOUT_FILE


def export_dynamic_batch(net: torch.nn.Module, example: torch.Tensor, out: Path) -> Path:
    """``torch.export`` ``net`` in eval mode with a dynamic batch dimension (``example``: batch >= 2)."""
    net = net.eval()
    batch = torch.export.Dim("batch")
    with torch.no_grad():
        program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(out))
    return out


def toml_list(values: tuple[int, ...] | list[int] | list[float]) -> str:
    return "[" + ", ".join(repr(v) for v in values) + "]"
