"""The discriminator's output as a raw logit d(x), (B,), whatever the network returns.

- ``logit`` / ``critic``: the output itself, one value per sample.
- ``probability``: a final sigmoid (the last leaf module of an nn.Module when it is an ``nn.Sigmoid``, a trailing
  ``aten.sigmoid`` in a torch.export graph, the last ``Sigmoid`` node of an ONNX graph; view/squeeze ops may follow)
  is removed, and the removal is checked numerically on a probe batch: sigmoid(new output) must equal the old one. When there is none, the probability is turned into ``log p − log(1 − p)`` with p clamped to
  [PROB_CLAMP, 1 − PROB_CLAMP]: such logits saturate at ±13.8 and a note says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from service.registry.errors import ManifestError
from service.registry.loaders import Network, OnnxFunction

PROB_CLAMP = 1e-6
STRIP_RTOL = 1e-4
STRIP_ATOL = 1e-5
SHAPE_OPS = ("view", "reshape", "squeeze", "unsqueeze", "flatten", "_unsafe_view", "clone", "contiguous")

LogitFn = Callable[[Tensor], Tensor]


def _per_sample(fn: Callable[[Tensor], Tensor]) -> LogitFn:
    def logit(x: Tensor) -> Tensor:
        return fn(x).reshape(x.shape[0])

    return logit


def clamped_logit(p: Tensor) -> Tensor:
    """log p − log(1 − p) with p clamped to [PROB_CLAMP, 1 − PROB_CLAMP]; finite, differentiable inside the clamp."""
    p = p.clamp(PROB_CLAMP, 1 - PROB_CLAMP)
    return torch.log(p) - torch.log1p(-p)


def _strip_module_sigmoid(module: nn.Module) -> Callable[[], None] | None:
    """Replace the last leaf module by nn.Identity when it is an nn.Sigmoid; returns an undo function."""
    leaves = [(name, m) for name, m in module.named_modules() if not list(m.children())]
    if not leaves or not isinstance(leaves[-1][1], nn.Sigmoid):
        return None
    name, sig = leaves[-1]
    parent_name, _, attr = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, attr, nn.Identity())

    def undo() -> None:
        setattr(parent, attr, sig)

    return undo


def _strip_graph_sigmoid(gm: torch.fx.GraphModule) -> Callable[[], None] | None:
    """Remove a trailing aten.sigmoid from a torch.fx graph (torch.export ``.module()``); returns an undo."""
    graph = gm.graph
    output = next((n for n in graph.nodes if n.op == "output"), None)
    if output is None:
        return None
    outs = output.args[0]
    node = outs[0] if isinstance(outs, (tuple, list)) and len(outs) == 1 else outs
    while isinstance(node, torch.fx.Node) and any(op in str(node.target) for op in SHAPE_OPS):
        node = node.args[0]
    if not (isinstance(node, torch.fx.Node) and "sigmoid" in str(node.target) and len(node.users) == 1):
        return None
    source = node.args[0]
    if not isinstance(source, torch.fx.Node):
        return None
    user = next(iter(node.users))
    user.replace_input_with(node, source)
    graph.erase_node(node)
    gm.recompile()

    def undo() -> None:
        with graph.inserting_before(user):
            sig = graph.call_function(torch.ops.aten.sigmoid.default, (source,))
        user.replace_input_with(source, sig)
        gm.recompile()

    return undo


DYNAMIC_BATCH_HINT = ("torch.onnx.export(..., dynamic_axes={'x': {0: 'batch'}}), torch.export with a Dim on axis 0, "
                      "or gansampler-server export")


def batch_size_error(who: str, what: str, works: int, fails: int, why: object) -> str:
    """The message for a network that runs on a batch of ``works`` rows but fails on ``fails`` rows with ``why``."""
    return (f"{who} runs on a batch of {works} {what} but fails on a batch of {fails} ({why}): it was exported with a "
            f"fixed batch size, or in training mode. gansampler runs any number of chains at once: export {who} with "
            f"a dynamic batch dimension ({DYNAMIC_BATCH_HINT}), in eval mode")


def fixed_batch_error(who: str, what: str, fn: Callable[[Tensor], Any], x: Tensor, exc: Exception) -> str | None:
    """The message for a network that failed with ``exc`` on ``x`` but runs on a batch of 1 or 2 of its rows (the
    usual fixed batch sizes of an export), or None when it fails on those too."""
    for b in (1, 2):
        if b >= x.shape[0]:
            break
        try:
            with torch.no_grad():
                fn(x[:b])
        except Exception:  # any failure of the user's network
            continue
        return batch_size_error(who, what, b, x.shape[0], exc)
    return None


def logit_head(net: Network, kind: str, probe_x: Tensor, manifest_path: Path) -> tuple[LogitFn, list[str]]:
    """The raw logit function of D (x (B, *output_shape) -> (B,)) and notes on how it was obtained.

    ``probe_x`` (B >= 2, *output_shape) is used to check one value per sample and that a stripped sigmoid
    reproduces D's probabilities.
    """
    probe_x = torch.cat([probe_x, 0.5 * probe_x])  # more points for the stripped-sigmoid check
    with torch.no_grad():
        try:
            out = net.fn(probe_x)
        except Exception as exc:  # any failure of the user's network
            fixed = fixed_batch_error("D", "samples", net.fn, probe_x, exc)
            why = fixed or f"forward on G's output failed: {exc}"
            raise ManifestError(manifest_path, "discriminator.file", why) from None
    b = probe_x.shape[0]
    if out.numel() != b:
        raise ManifestError(
            manifest_path,
            "discriminator.output",
            f"D returned shape {tuple(out.shape)} for {b} samples, expected one value per sample",
        )
    if kind != "probability":
        return _per_sample(net.fn), []
    p = out.reshape(b).double()
    if bool(((p < 0) | (p > 1)).any()):
        raise ManifestError(
            manifest_path, "discriminator.output", f"'probability' but D returned values outside [0, 1]: {p.tolist()}"
        )
    module = net.module
    candidate: Callable[[Tensor], Tensor] | None = None
    undo: Callable[[], None] | None = None
    if module is not None:
        undo = _strip_graph_sigmoid(module) if isinstance(module, torch.fx.GraphModule) else None
        undo = undo or _strip_module_sigmoid(module)
        candidate = module if undo is not None else None
    elif isinstance(net.fn, OnnxFunction):
        candidate = net.fn.without_final_sigmoid()
    if candidate is not None:
        with torch.no_grad():
            stripped = candidate(probe_x).reshape(b).double()
        if torch.allclose(torch.sigmoid(stripped), p, rtol=STRIP_RTOL, atol=STRIP_ATOL):
            return _per_sample(candidate), ["final sigmoid of the discriminator removed: exact logits"]
        if undo is not None:
            undo()
    limit = math.log((1 - PROB_CLAMP) / PROB_CLAMP)
    note = f"no final nn.Sigmoid found: logits computed from clamped probabilities (saturate at ±{limit:.1f})"
    fn = net.fn

    def converted(x: Tensor) -> Tensor:
        return clamped_logit(fn(x).reshape(x.shape[0]))

    return converted, [note]
