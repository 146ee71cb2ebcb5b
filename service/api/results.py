"""From a finished :class:`ChainResult` to the response body (JSON or npz), with the requested diagnostics level."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from service.api.encoding import finite_or_none, to_lists, to_npz, to_png
from service.api.sampling import Prepared
from service.engine.ticket import ChainResult, Traces
from service.samplers.diagnostics import summarize
from service.samplers.driver import Traces as DriverTraces


def diagnostics(prep: Prepared, r: ChainResult) -> dict[str, Any] | None:
    """The requested level of diagnostics (``service.samplers.diagnostics.summarize``) plus ``calibrated``."""
    level = prep.diagnostics
    if level == "none":
        return None
    traces, curve = (None, None) if r.traces is None else _driver_traces(r.traces)
    out = summarize(r.stats, r.extras, exact=prep.exact, chains=level in ("chains", "traces"),
                    traces=traces if level == "traces" else None, curve=curve if level == "traces" else None)
    out["calibrated"] = bool(prep.model.calibrated)
    return finite_or_none(out)


def _driver_traces(tr: Traces) -> tuple[DriverTraces, Tensor]:
    """The engine's (chains, points) traces in the driver's (points, chains) layout."""
    points = tr.logit.shape[1]
    t = torch.arange(points, dtype=torch.int64) * tr.every
    return DriverTraces(tr.every, t, tr.logit.T, tr.energy.T, tr.z_norm.T), tr.curve


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
    return to_npz(r.output.x, r.output.z, r.output.logit, _meta(prep, r, total_s))
