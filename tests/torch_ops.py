"""Recording the torch ops a piece of code dispatches in the calling thread."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class RecordOps(TorchDispatchMode):
    """``with RecordOps() as rec: ...`` then ``rec.ops``: the names of the ops dispatched in this thread.

    ``Tensor.numpy()`` dispatches a ``detach`` from C++ for its view (no kernel, no GIL release); it is left out
    unless ``keep_detach``."""

    def __init__(self, keep_detach: bool = False) -> None:
        super().__init__()
        self.ops: list[str] = []
        self.keep_detach = keep_detach

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if self.keep_detach or func is not torch.ops.aten.detach.default:
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))
