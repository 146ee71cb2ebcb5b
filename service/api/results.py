"""From a finished :class:`ChainResult` to the response body (JSON or npz), with the requested diagnostics level."""

from __future__ import annotations

from typing import Any

from service.api.encoding import finite_or_none, to_lists, to_npz, to_png
from service.api.sampling import Prepared
from service.engine.ticket import ChainResult
from service.samplers.diagnostics import TRACE_NAMES, curve_summary, summarize, trace_summary


def diagnostics(prep: Prepared, r: ChainResult) -> dict[str, Any] | None:
    """The requested level of diagnostics (``service.samplers.diagnostics.summarize``) plus ``calibrated``. Runs no
    torch op (the event loop or a pool thread calls it: see ``summarize``)."""
    level = prep.diagnostics
    if level == "none":
        return None
    out = summarize(r.stats, r.extras, exact=prep.exact, chains=level in ("chains", "traces"))
    if level == "traces" and r.traces is not None:
        tr = r.traces  # the engine's (chains, points) layout
        out.update(curve_summary(tr.curve))
        out.update(trace_summary(tr.every, {k: getattr(tr, k) for k in TRACE_NAMES}))
    out["calibrated"] = bool(prep.model.calibrated)
    return finite_or_none(out)


def _meta(prep: Prepared, r: ChainResult, total_s: float) -> dict[str, Any]:
    """Everything in the response except the samples."""
    w = prep.work
    return {
        "model": prep.model.id,
        "sampler": prep.sampler,
        "seed": w.seed,
        "n": w.n,
        "steps": w.steps,
        "output": prep.output,
        "shape": list(prep.model.manifest.output.shape),
        "diagnostics": diagnostics(prep, r),
        "timing": {"queue_s": r.queue_s, "compute_s": r.compute_s, "total_s": total_s},
    }


def response_body(prep: Prepared, r: ChainResult, total_s: float) -> dict[str, Any]:
    body = _meta(prep, r, total_s)
    out = prep.model.manifest.output
    x = r.output.x
    body["samples"] = to_png(x, tuple(out.range or (-1.0, 1.0))) if prep.output == "png" else to_lists(x)
    return body


def npz_body(prep: Prepared, r: ChainResult, total_s: float) -> bytes:
    """``samples`` (n, *shape) float32, ``z``, ``logit_final`` and ``meta.json`` (docs/api.md)."""
    return to_npz(r.output.x, r.output.z, r.output.logit, {**_meta(prep, r, total_s), "output": "array"})  # floats
