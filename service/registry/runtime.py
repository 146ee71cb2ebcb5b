"""``[runtime]`` of model.toml: memory format, ``torch.compile``, forward backend and precision of a model's networks.

All are speed levers measured in ``benchmarks/speed_runtime.py`` (results in ``benchmarks/runtime_results.md``).
memory_format and compile keep results equal within float tolerance, checked at load on a probe batch against the
contiguous eager networks; ``forward`` and ``precision`` (:mod:`service.registry.runtime_backends`) are opt-in
because they change results (onnxruntime by float rounding, checked with the same tolerance; bfloat16 by more,
recorded, not held to it).

memory_format
    ``contiguous``      the networks as loaded.
    ``channels_last``   every arch-backed nn.Module (safetensors / state_dict) with 4-D weights (conv layers) gets
                        ``module.to(memory_format=torch.channels_last)``; its 4-D inputs are fed channels_last and
                        G's output is handed back contiguous (callers may ``view`` it). torch_export archives and
                        ONNX graphs keep the layout they were saved with: a note says so.
    ``auto`` (default)  decided by the model's structure alone, never by a timing: an image model (output
                        (C, H, W)) whose arch-backed G or D has 4-D (conv) weights gets channels_last, provided the
                        channels_last forward runs and its logits agree with contiguous within tolerance on PROBE_BATCH
                        fixed latents; every other model (MLPs, vector outputs, saved graphs) stays contiguous. The
                        same files on the same machine (torch build, thread count) therefore always load to the same
                        layout and the same bits, so a request stays reproducible from its seed across restarts (no
                        load-time timing that a busy machine could flip). The rule rests on
                        ``benchmarks/runtime_results.md``: channels_last was 1.1-1.7x faster (G + D forward,
                        forward + ∇z, an mh request; batches 64-1024) on both conv models measured (the 16x16
                        digits-dcgan and the 64x64 DCGAN), on a 2-core CPU; MLPs have no 4-D weights to re-lay.
                        ``contiguous`` pins the as-loaded layout for a conv model where channels_last does not pay.
compile
    ``true``            ``torch.compile`` (inductor, ``dynamic=True``: the engine's batch changes as chains join and
                        retire) of G and of D's raw logit, compiled and warmed up during load (batch 1, which dynamic
                        shapes specialise, and WARMUP_BATCH; with and without gradients w.r.t. z) and checked
                        against eager (logits and ∇z). A failure (no C++ compiler, an unsupported op, a mismatch)
                        leaves the model eager with a note; a compiler error later (a recompile) does the same.

:func:`apply_runtime` returns the functions to serve, notes for ``LoadedModel.notes`` and a JSON-ready ``info``
dict (``LoadedModel.runtime``): ``memory_format_setting`` (as in model.toml), ``memory_format`` (the layout served),
``memory_format_reason`` (why), ``max_abs_logit_diff_channels_last`` (the probe check, when it ran), the compile
keys, ``precision_setting`` / ``precision`` (+ ``precision_reason``, ``max_abs_logit_diff_bfloat16`` ... when
bfloat16) and ``forward_setting`` / ``forward`` (+ ``forward_reason``, ``max_abs_logit_diff_onnxruntime`` ... when
onnxruntime). Order: memory format, then precision or forward or compile (the schema lets at most one of the three
differ from its default).
"""

from __future__ import annotations

import logging
import math
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from service.registry.errors import ManifestError
from service.registry.loaders import Network
from service.registry.runtime_backends import apply_bfloat16, apply_onnxruntime
from service.registry.schema import Manifest

Fn = Callable[[Tensor], Tensor]
log = logging.getLogger(__name__)

ARCH_BACKEND = "torch"
"""Backend name of safetensors / state_dict networks: the only ones whose modules the registry re-lays out."""
PROBE_BATCH = 64
"""Fixed latents (seed PROBE_SEED) on which the channels_last logits are checked against contiguous."""
LOGIT_ATOL = 1e-4
LOGIT_RTOL = 1e-5
"""Logits agree when max |Δ| <= LOGIT_ATOL + LOGIT_RTOL * max |logit| (float32 reassociation is ~1e-6)."""
GRAD_ATOL = 1e-4
GRAD_RTOL = 1e-4
"""∇z agrees when max |Δ| <= GRAD_ATOL + GRAD_RTOL * max |∇z|."""
COMPILE_BACKEND = "inductor"
WARMUP_BATCHES = (1, 8, 64)
"""Batches compiled at load: 1 (dynamic shapes specialise sizes 0 and 1) and one dynamic batch."""
PROBE_SEED = 1
ORT_CHECK_BATCHES = (1, PROBE_BATCH)
"""Batches at which ``forward = "onnxruntime"`` is checked against torch (1: a batch the export never traced)."""
NO_CONV = "no 4-D (conv) weights"


class Runtime(NamedTuple):
    """What :func:`apply_runtime` hands back: the functions to serve, notes and the JSON-ready record."""

    generator: Fn
    raw_logit: Fn
    notes: list[str]
    info: dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------
# helpers


def _latents(m: Manifest, batch: int, device: str) -> Tensor:
    gen = torch.Generator().manual_seed(PROBE_SEED)
    return torch.randn((batch, *m.latent.shape), generator=gen).to(device)


def _forward(g: Fn, d: Fn, z: Tensor) -> Tensor:
    """D(G(z)) without gradients, (B,)."""
    with torch.no_grad():
        return d(g(z)).reshape(-1)


def _grad(g: Fn, d: Fn, z: Tensor) -> Tensor:
    """∇z of sum D(G(z)), as the gradient samplers take it (``torch.autograd.grad`` w.r.t. z only)."""
    with torch.enable_grad():
        zg = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(d(g(zg)).reshape(-1).sum(), zg)
    return grad


def _diff(a: Tensor, b: Tensor) -> float:
    """max |a - b| over the entries finite in both; inf when a and b are finite at different entries.

    A generator may give NaN in part of the latent space: those rows must stay non-finite, not make the check pass
    (NaN compares False with every tolerance) or the JSON record invalid.
    """
    fa, fb = torch.isfinite(a), torch.isfinite(b)
    if not torch.equal(fa, fb):
        return math.inf
    return float((a[fa].double() - b[fb].double()).abs().max()) if bool(fa.any()) else 0.0


def _allowed(ref: Tensor, atol: float, rtol: float) -> float:
    finite = ref[torch.isfinite(ref)]
    return atol + rtol * (float(finite.abs().max()) if finite.numel() else 0.0)


def _check(out: Tensor, ref: Tensor, atol: float, rtol: float) -> tuple[float, float]:
    """(max |out - ref| as :func:`_diff` takes it, what is allowed against ``ref``)."""
    return _diff(out, ref), _allowed(ref, atol, rtol)


def _has_4d_weights(module: nn.Module) -> bool:
    return any(t.dim() == 4 for t in [*module.parameters(), *module.buffers()])


def _set_layout(modules: Sequence[nn.Module], fmt: torch.memory_format) -> None:
    for module in modules:
        module.to(memory_format=fmt)  # type: ignore[call-overload]


def _channels_last_input(fn: Fn) -> Fn:
    def run(x: Tensor) -> Tensor:
        return fn(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)

    return run


def _contiguous_output(fn: Fn) -> Fn:
    def run(x: Tensor) -> Tensor:
        return fn(x).contiguous()

    return run


# ---------------------------------------------------------------------------------------------------------------
# memory format


def _channels_last(
    m: Manifest, path: Path, g: Network, d: Network, g_fn: Fn, d_fn: Fn, device: str
) -> tuple[Fn, Fn, list[str], dict[str, Any]]:
    """Apply (``channels_last``), decide (``auto``, by structure and the probe check) or skip (``contiguous``).

    Returns (G fn, D raw-logit fn, notes, info). Deterministic: no timing; the probe check runs the same fixed
    latents through the same weights on every load.
    """
    setting = m.runtime.memory_format
    info: dict[str, Any] = {"memory_format_setting": setting, "memory_format": "contiguous"}
    if setting == "contiguous":
        info["memory_format_reason"] = "pinned in [runtime]: the networks as loaded"
        return g_fn, d_fn, [], info
    if setting == "auto" and len(m.output.shape) != 3:
        info["memory_format_reason"] = "output is not an image (C, H, W)"
        return g_fn, d_fn, [], info
    nets = [n for n in (g, d) if n.backend == ARCH_BACKEND and n.module is not None and _has_4d_weights(n.module)]
    modules = list({id(n.module): n.module for n in nets if n.module is not None}.values())
    if not modules:
        why = (
            "torch_export / onnx networks keep the layout they were saved with"
            if any(n.backend != ARCH_BACKEND for n in (g, d))
            else NO_CONV
        )
        info["memory_format_reason"] = why
        quiet = setting == "auto" and why == NO_CONV
        return g_fn, d_fn, [] if quiet else [f"memory_format {setting}: contiguous ({why})"], info
    cl_g = _contiguous_output(_channels_last_input(g_fn)) if any(n is g for n in nets) else g_fn
    cl_d = _channels_last_input(d_fn) if any(n is d for n in nets) else d_fn
    z = _latents(m, PROBE_BATCH, device)
    ref = _forward(g_fn, d_fn, z)
    allowed = _allowed(ref, LOGIT_ATOL, LOGIT_RTOL)
    _set_layout(modules, torch.channels_last)
    try:
        diff = _diff(_forward(cl_g, cl_d, z), ref)
    except Exception as exc:  # e.g. a .view() that needs contiguous activations
        _set_layout(modules, torch.contiguous_format)
        why = f"the channels_last forward fails: {type(exc).__name__}: {exc}"
        if setting == "channels_last":
            raise ManifestError(path, "runtime.memory_format", f"{why}; use 'contiguous' or 'auto'") from None
        info["memory_format_reason"] = why
        return g_fn, d_fn, [f"memory_format auto: contiguous ({why})"], info
    info["max_abs_logit_diff_channels_last"] = diff if math.isfinite(diff) else None  # JSON-safe
    if diff > allowed:
        _set_layout(modules, torch.contiguous_format)
        why = (
            f"channels_last changes the logits by {diff:.2e} > {allowed:.2e} on {PROBE_BATCH} probe latents"
            if math.isfinite(diff)
            else f"channels_last changes which logits are finite on {PROBE_BATCH} probe latents"
        )
        if setting == "channels_last":
            raise ManifestError(path, "runtime.memory_format", f"{why}; use 'contiguous'")
        info["memory_format_reason"] = why
        return g_fn, d_fn, [f"memory_format auto: contiguous ({why})"], info
    info["memory_format"] = "channels_last"
    if setting == "channels_last":
        info["memory_format_reason"] = "set in [runtime]; the logits agree with contiguous"
        return cl_g, cl_d, [f"memory_format channels_last (max |Δ logit| {diff:.1e} vs contiguous)"], info
    which = " and ".join(name for name, net in (("G", g), ("D", d)) if any(n is net for n in nets))
    info["memory_format_reason"] = (
        f"image model with conv weights ({which}); the logits agree with contiguous "
        "(channels_last measured 1.1-1.7x on conv models: benchmarks/runtime_results.md)"
    )
    note = f"memory_format auto: channels_last (conv weights in {which}; max |Δ logit| {diff:.1e} vs contiguous)"
    log.info("%s: %s", m.id, note)
    return cl_g, cl_d, [note], info


# ---------------------------------------------------------------------------------------------------------------
# torch.compile


def _is_compiler_error(exc: BaseException) -> bool:
    """An error raised by dynamo / inductor themselves (not by the user's network)."""
    return any(c.__module__.startswith(("torch._dynamo", "torch._inductor")) for c in type(exc).__mro__)


def _own_code(fn: Fn, name: str) -> Fn:
    """A new function calling ``fn`` with a code object of its own.

    Dynamo keeps compiled graphs, and its recompile limit, per code object: without this every model's G (same
    arch class, or the registry's shared logit closure) would share one cache and the limit would be reached after a
    few loaded models, silently running eager.
    """

    def call(x: Tensor) -> Tensor:
        return fn(x)

    code = call.__code__.replace(co_name=name, co_qualname=name)
    return types.FunctionType(code, call.__globals__, name, None, call.__closure__)


class CompiledFn:
    """A compiled network function that runs eager from the first compiler error on (``failed`` says why)."""

    def __init__(self, compiled: Fn, eager: Fn, name: str) -> None:
        self.compiled = compiled
        self.eager = eager
        self.name = name
        self.failed: str | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if self.failed is None:
            try:
                return self.compiled(x)
            except Exception as exc:
                if not _is_compiler_error(exc):
                    raise
                self.failed = f"{type(exc).__name__}: {str(exc)[:300]}"
                log.warning("%s: torch.compile failed, running eager from now on: %s", self.name, self.failed)
        return self.eager(x)


def _compile(
    m: Manifest, g_fn: Fn, d_fn: Fn, device: str, differentiable: bool
) -> tuple[Fn, Fn, list[str], dict[str, Any]]:
    """Compile G and D's raw logit, warm them up and check them against eager; eager with a note on failure."""
    info: dict[str, Any] = {"compile_setting": True, "compile": False}
    t0 = time.perf_counter()
    cg = CompiledFn(torch.compile(_own_code(g_fn, "generator"), backend=COMPILE_BACKEND, dynamic=True), g_fn,
                    f"{m.id} generator")
    cd = CompiledFn(torch.compile(_own_code(d_fn, "discriminator"), backend=COMPILE_BACKEND, dynamic=True), d_fn,
                    f"{m.id} discriminator")
    worst = {"logit": 0.0, "grad": 0.0}
    try:
        for batch in WARMUP_BATCHES:
            z = _latents(m, batch, device)
            ref = _forward(g_fn, d_fn, z)
            diff = _diff(_forward(cg.compiled, cd.compiled, z), ref)
            if diff > _allowed(ref, LOGIT_ATOL, LOGIT_RTOL):
                raise ValueError(f"compiled logits differ from eager by {diff:.2e} at batch {batch}")
            worst["logit"] = max(worst["logit"], diff)
            if differentiable:
                ref_grad = _grad(g_fn, d_fn, z)
                gdiff = _diff(_grad(cg.compiled, cd.compiled, z), ref_grad)
                if gdiff > _allowed(ref_grad, GRAD_ATOL, GRAD_RTOL):
                    raise ValueError(f"compiled ∇z differs from eager by {gdiff:.2e} at batch {batch}")
                worst["grad"] = max(worst["grad"], gdiff)
    except Exception as exc:  # a compiler failure or a mismatch: never fail the load for a speed lever
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        info["compile_error"] = why
        log.warning("%s: torch.compile not used: %s", m.id, why)
        return g_fn, d_fn, [f"compile: eager (torch.compile failed: {why})"], info
    seconds = time.perf_counter() - t0
    info.update(
        compile=True,
        compile_seconds=round(seconds, 3),
        max_abs_logit_diff_compiled=worst["logit"],
        **({"max_abs_grad_diff_compiled": worst["grad"]} if differentiable else {}),
    )
    what = "forward and ∇z" if differentiable else "forward"
    note = (
        f"compile: torch.compile ({COMPILE_BACKEND}, dynamic batch), {what} compiled at load in {seconds:.1f} s; "
        f"max |Δ logit| {worst['logit']:.1e} vs eager"
    )
    return cg, cd, [note], info


# ---------------------------------------------------------------------------------------------------------------
# entry point


def apply_runtime(
    m: Manifest, path: Path, g: Network, d: Network, raw_logit: Fn, device: str, differentiable: bool
) -> Runtime:
    """Apply ``m.runtime`` to G (``g.fn``) and D's raw logit function.

    ``differentiable``: ∇z of D(G(z)) flows in eager mode (then the compiled backward is warmed up and checked).
    Modules are changed in place (channels_last); the returned functions are what the model serves.
    """
    g_fn, d_fn, notes, info = _channels_last(m, path, g, d, g.fn, raw_logit, device)
    if m.runtime.precision == "bfloat16":
        z = _latents(m, PROBE_BATCH, device)
        g_fn, d_fn, more, extra = apply_bfloat16(
            path, (g, d), (g_fn, d_fn), device, z, _forward, _grad if differentiable else None
        )
        notes += more
        info.update(extra)
    else:
        info.update(precision_setting=m.runtime.precision, precision=m.runtime.precision)
    if m.runtime.forward == "onnxruntime":
        g_fn, d_fn, more, extra = apply_onnxruntime(
            m.id, (g, d), (g_fn, d_fn), device, lambda batch: _latents(m, batch, device), _check,
            (LOGIT_ATOL, LOGIT_RTOL), ORT_CHECK_BATCHES, m.runtime.threads,
        )
        notes += more
        info.update(extra)
    else:
        info.update(forward_setting=m.runtime.forward, forward=m.runtime.forward)
    if m.runtime.compile:
        g_fn, d_fn, more, compiled = _compile(m, g_fn, d_fn, device, differentiable)
        notes += more
        info.update(compiled)
    else:
        info.update(compile_setting=False, compile=False)
    info["threads"] = m.runtime.threads
    if m.runtime.threads is not None:
        notes.append(
            f"threads: the engine steps this model on {m.runtime.threads} CPU thread"
            f"{'' if m.runtime.threads == 1 else 's'} (process default {torch.get_num_threads()})"
            + ("" if torch.device(device).type == "cpu" else "; on a GPU only the CPU-side ops use them")
        )
    return Runtime(g_fn, d_fn, notes, info)

