"""``[runtime] forward`` and ``[runtime] precision`` of model.toml: onnxruntime for forward-only calls, bf16 autocast.

Both levers act on the torch networks of a model (safetensors / state_dict + arch, torch_export); an ``onnx``
network already runs on onnxruntime in float32 and is left as it is. Both are opt-in: their results differ from the
float32 torch forward (onnxruntime by float rounding, bfloat16 by much more), so a request's samples are
reproducible from its seed on the same backend and precision only.

forward
    ``torch`` (default)  the torch networks serve every call.
    ``onnxruntime``      G and D's raw logit (as served: logit head included, calibration stays in torch) are
                         exported to ONNX in memory at load (the TorchScript exporter, ``dynamo=False``: the dynamo
                         exporter needs onnxscript, which gansampler does not depend on; dynamic batch axis) and run
                         in an onnxruntime InferenceSession on CPUExecutionProvider with as many intra-op threads as
                         torch uses (``torch.get_num_threads()`` at load). :class:`OrtForward` serves a call from
                         onnxruntime when its result needs no gradient (``torch.no_grad()``, or an input that does
                         not require grad: what raw, mh, drs and sir evaluate) and from the torch function otherwise,
                         so rep and ddls get ∇z from torch, bit-identical to ``forward = "torch"``. Checked at load
                         against torch on batch 1 and PROBE_BATCH probe latents (G's output and the logits, float32
                         tolerance). Any failure (onnxruntime missing, an op the exporter refuses, a mismatch, a
                         device other than CPU) keeps torch with a note.
precision
    ``float32`` (default)
    ``bfloat16``         G and D's raw logit run under ``torch.autocast(device type, torch.bfloat16)``; their
                         outputs are cast back to float32 (the samplers' arithmetic stays float32); gradients flow.
                         The probe logits (and ∇z) against float32 are recorded, not held to the float32 tolerance:
                         that is the point of the setting. Loading fails when bf16 makes a probe logit (or ∇z)
                         non-finite that float32 keeps finite.

TF32 (CUDA) is not offered: ``torch.backends.cuda.matmul.allow_tf32`` / ``torch.backends.cudnn.allow_tf32`` are
process-wide switches, so one model's setting would change every other model served by the process.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from service.registry.errors import ManifestError
from service.registry.loaders import Network
from service.samplers.energy import rows_finite

Fn = Callable[[Tensor], Tensor]
Latents = Callable[[int], Tensor]
"""batch -> the fixed probe latents of that batch (runtime._latents)."""
Checker = Callable[[Tensor, Tensor, float, float], tuple[float, float]]
"""(candidate, reference, atol, rtol) -> (max |Δ| over rows finite in both, allowed)."""

ONNX_BACKEND = "onnxruntime"
ORT_PROVIDER = "CPUExecutionProvider"
ORT_DEVICE = "cpu"
EXPORT_BATCH = 2
"""Batch of the example input the exporter traces (1 could be specialised into the graph)."""
OPSET = 17
ORT_SPINNING = False
"""onnxruntime's intra-op threads spin-wait between ops by default; on a CPU shared with the sampler's own torch
ops (and other processes) that burns cores for nothing, so they sleep (``session.intra_op.allow_spinning``)."""
BF16 = torch.bfloat16


# ---------------------------------------------------------------------------------------------------------------
# forward = "onnxruntime"


class _Traced(nn.Module):
    """A network function as a module for the ONNX exporter.

    The function is kept out of the module tree on purpose: the exporter switches the module it is given to eval
    mode and back, recursively, and a torch_export GraphModule refuses ``.train()``.
    """

    def __init__(self, fn: Fn) -> None:
        super().__init__()
        self.__dict__["fn"] = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.__dict__["fn"](x)


def export_onnx(fn: Fn, example: Tensor) -> bytes:
    """``fn`` (B, *in) -> (B, *out) as an ONNX graph with a dynamic batch axis (TorchScript exporter, in memory)."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape constants; the load check catches real ones
        torch.onnx.export(
            _Traced(fn).eval(),
            (example,),
            buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to a file object
            dynamo=False,
            opset_version=OPSET,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    return buf.getvalue()


def ort_session(model: bytes, threads: int) -> Any:
    """An onnxruntime InferenceSession on CPU with ``threads`` intra-op threads and sequential execution."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if ORT_SPINNING else "0")
    return ort.InferenceSession(model, opts, providers=[ORT_PROVIDER])


class OrtForward:
    """A network function served by onnxruntime when no gradient can flow out of it, by torch otherwise.

    ``__call__(x)``: x (B, *in) float32 on CPU -> (B, *out) float32. onnxruntime runs when the torch function's
    result could not require grad: grad mode off (``torch.no_grad()``, inference mode) or an input that does not
    require grad (the networks' parameters are frozen at load). An empty batch goes to torch too.
    """

    def __init__(self, session: Any, torch_fn: Fn, name: str) -> None:
        self.session = session
        self.torch_fn = torch_fn
        self.name = name
        self.input_name = session.get_inputs()[0].name

    def wants_torch(self, x: Tensor) -> bool:
        return (torch.is_grad_enabled() and x.requires_grad) or x.shape[0] == 0

    def onnx(self, x: Tensor) -> Tensor:
        arr = x.detach().to(torch.float32).contiguous().numpy()
        (out,) = self.session.run(None, {self.input_name: arr})[:1]
        return torch.from_numpy(out)

    def __call__(self, x: Tensor) -> Tensor:
        return self.torch_fn(x) if self.wants_torch(x) else self.onnx(x)


def apply_onnxruntime(
    model_id: str, nets: tuple[Network, Network], fns: tuple[Fn, Fn], device: str, latents: Latents, check: Checker,
    tolerance: tuple[float, float], check_batches: tuple[int, ...] = (1,), threads: int | None = None,
) -> tuple[Fn, Fn, list[str], dict[str, Any]]:
    """Serve G and D's raw logit (``fns``, as served so far) from onnxruntime for forward-only calls.

    ``nets``: (G, D) as loaded (which of them are torch networks); ``latents(batch)``: the probe latents;
    ``tolerance``: (atol, rtol) of the G-output and logit check, run at each of ``check_batches``; ``threads``:
    onnxruntime's intra-op threads (``[runtime] threads``; None: as many as torch uses at load). Returns (G fn,
    D fn, notes, info); on any failure the functions come back unchanged with a note and ``info["forward_reason"]``
    saying why.
    """
    info: dict[str, Any] = {"forward_setting": ONNX_BACKEND, "forward": "torch"}
    g_fn, d_fn = fns

    def keep(why: str) -> tuple[Fn, Fn, list[str], dict[str, Any]]:
        info["forward_reason"] = why
        return g_fn, d_fn, [f"forward onnxruntime: torch ({why})"], info

    if torch.device(device).type != ORT_DEVICE:
        return keep(f"onnxruntime forward runs on CPU only; device {device!r} keeps torch")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return keep("onnxruntime is not installed: pip install 'gansampler-service[onnx]'")
    threads = torch.get_num_threads() if threads is None else threads
    roles = [i for i, n in enumerate(nets) if n.backend != ONNX_BACKEND]
    served: list[Fn] = [g_fn, d_fn]
    worst = {"output": 0.0, "logit": 0.0}
    size = 0
    try:
        z = latents(EXPORT_BATCH)
        with torch.no_grad():
            examples = (z, g_fn(z))
        for i in roles:
            graph = export_onnx(fns[i], examples[i])
            size += len(graph)
            role = ("generator", "discriminator")[i]
            served[i] = OrtForward(ort_session(graph, threads), fns[i], f"{model_id} {role}")
        for batch in check_batches:
            z = latents(batch)
            with torch.no_grad():
                x_ref, x = g_fn(z), served[0](z)
                ref, out = d_fn(x_ref).reshape(-1), served[1](x).reshape(-1)
            for key, a, b in (("output", x, x_ref), ("logit", out, ref)):
                diff, allowed = check(a, b, *tolerance)
                if not diff <= allowed:
                    what = "G's output" if key == "output" else "the logits"
                    raise ValueError(f"onnxruntime changes {what} by {diff:.2e} > {allowed:.2e} at batch {batch}")
                worst[key] = max(worst[key], diff)
    except Exception as exc:  # export, session or check: never fail the load for a speed lever
        return keep(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    which = " and ".join(("G", "D")[i] for i in roles)
    info.update(
        forward=ONNX_BACKEND,
        forward_reason=f"forward-only calls of {which} run on onnxruntime; gradient calls on torch",
        onnxruntime_threads=threads,
        onnxruntime_model_bytes=size,
        max_abs_output_diff_onnxruntime=worst["output"],
        max_abs_logit_diff_onnxruntime=worst["logit"],
    )
    note = (
        f"forward onnxruntime: {which} forward-only on onnxruntime ({ORT_PROVIDER}, {threads} "
        f"thread{'' if threads == 1 else 's'}), ∇z on "
        f"torch; max |Δ logit| {worst['logit']:.1e} vs torch"
    )
    return served[0], served[1], [note], info


# ---------------------------------------------------------------------------------------------------------------
# precision = "bfloat16"


def autocast_bf16(fn: Fn, device_type: str) -> Fn:
    """``fn`` under bf16 autocast, its output cast back to float32 (gradients flow through both casts)."""

    def run(x: Tensor) -> Tensor:
        with torch.autocast(device_type, dtype=BF16):
            y = fn(x)
        return y.float()

    return run


def _newly_nonfinite(out: Tensor, ref: Tensor) -> int:
    """Rows (of a (B, ...) pair) finite in ``ref`` but not in ``out``."""
    return int((rows_finite(ref) & ~rows_finite(out)).sum())


def _finite_diff(a: Tensor, b: Tensor) -> float:
    both = torch.isfinite(a) & torch.isfinite(b)
    return float((a[both].double() - b[both].double()).abs().max()) if bool(both.any()) else 0.0


def apply_bfloat16(
    path: Path, nets: tuple[Network, Network], fns: tuple[Fn, Fn], device: str, z: Tensor,
    forward: Callable[[Fn, Fn, Tensor], Tensor], grad: Callable[[Fn, Fn, Tensor], Tensor] | None,
) -> tuple[Fn, Fn, list[str], dict[str, Any]]:
    """Run the torch networks among ``nets`` under bf16 autocast; record how far the probe logits (and ∇z) move.

    ``z``: the probe latents; ``forward`` / ``grad``: D(G(z)) and ∇z of its sum (``grad`` None: not
    differentiable). Raises :class:`ManifestError` (``runtime.precision``) when bf16 makes a probe logit or ∇z row
    non-finite that float32 keeps finite.
    """
    device_type = torch.device(device).type
    info: dict[str, Any] = {"precision_setting": "bfloat16", "precision": "float32"}
    g_fn, d_fn = fns
    if not torch.amp.is_autocast_available(device_type):
        info["precision_reason"] = f"no autocast on device type {device_type!r}"
        return g_fn, d_fn, [f"precision bfloat16: float32 (no autocast on device type {device_type!r})"], info
    roles = [i for i, n in enumerate(nets) if n.backend != ONNX_BACKEND]
    served = [autocast_bf16(f, device_type) if i in roles else f for i, f in enumerate(fns)]
    ref = forward(g_fn, d_fn, z)
    out = forward(served[0], served[1], z)
    checks = [("logits", out, ref)]
    if grad is not None:
        checks.append(("∇z", grad(served[0], served[1], z), grad(g_fn, d_fn, z)))
    for what, a, b in checks:
        bad = _newly_nonfinite(a, b)
        if bad:
            raise ManifestError(
                path, "runtime.precision",
                f"'bfloat16' makes {what} non-finite on {bad} of {z.shape[0]} probe latents where float32 keeps them "
                "finite; use precision = 'float32'",
            )
    which = " and ".join(("G", "D")[i] for i in roles)
    diff = _finite_diff(out, ref)
    scale = _finite_diff(ref, torch.zeros_like(ref))
    info.update(precision="bfloat16", precision_reason=f"bf16 autocast on {which}; outputs cast to float32",
                max_abs_logit_diff_bfloat16=diff, max_abs_logit_float32=scale)
    note = (
        f"precision bfloat16: {which} under bf16 autocast; max |Δ logit| {diff:.1e} vs float32 "
        f"(max |logit| {scale:.1f})"
    )
    if grad is not None:
        gdiff = _finite_diff(checks[1][1], checks[1][2])
        info["max_abs_grad_diff_bfloat16"] = gdiff
        info["max_abs_grad_float32"] = _finite_diff(checks[1][2], torch.zeros_like(checks[1][2]))
    assert all(math.isfinite(v) for k, v in info.items() if k.startswith("max_"))
    return served[0], served[1], [note], info
