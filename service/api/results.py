"""From a finished :class:`ChainResult` to the response body (JSON or npz), with the requested diagnostics level."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from service.api.encoding import finite_or_none, to_lists, to_npz, to_png
from service.api.sampling import Prepared
from service.engine.ticket import ChainResult, Traces

TRACE_NAMES = ("logit", "energy", "z_norm")
PER_CHAIN_FLAGS = ("restarted",)  # extras reported per chain only, not averaged


def _mean(v: Tensor) -> float | None:
    v = v.float()
    v = v[torch.isfinite(v)]
    return float(v.mean()) if v.numel() else None


def diagnostics(prep: Prepared, r: ChainResult) -> dict[str, Any] | None:
    level = prep.diagnostics
    if level == "none":
        return None
    st = r.stats
    rates = st.acceptance_sum.float() / st.proposals.clamp(min=1).float()
    stepped = st.proposals > 0
    out: dict[str, Any] = {
        "acceptance_rate": float(rates[stepped].mean()) if bool(stepped.any()) else 1.0,
        "accepted": int(st.accepted.sum()),
        "proposals": int(st.proposals.sum()),
        "nonfinite": int(st.nonfinite.sum()),
        "calibrated": bool(prep.model.calibrated),
        "exact": prep.exact,
        "logit_initial_mean": _mean(st.logit_initial),
        "logit_final_mean": _mean(st.logit_final),
        "sampler": {k: _mean(v) for k, v in r.extras.items() if k not in PER_CHAIN_FLAGS},
    }
    if level in ("chains", "traces"):
        out["chains"] = _chains(r, rates)
    if level == "traces" and r.traces is not None:
        out.update(_traces(r.traces))
    return finite_or_none(out)


def _chains(r: ChainResult, rates: Tensor) -> list[dict[str, Any]]:
    st = r.stats
    cols = {
        "accepted": st.accepted.tolist(),
        "proposals": st.proposals.tolist(),
        "acceptance_rate": rates.tolist(),
        "logit_initial": st.logit_initial.float().tolist(),
        "logit_final": st.logit_final.float().tolist(),
        "nonfinite": st.nonfinite.tolist(),
    }
    extras = {k: v.tolist() for k, v in r.extras.items()}
    chains = []
    for i in range(st.accepted.shape[0]):
        row: dict[str, Any] = {"chain": i, **{k: v[i] for k, v in cols.items()}}
        row["distinct_states"] = row["accepted"] + 1
        row.update({k: v[i] for k, v in extras.items()})
        row["restarted"] = bool(row.get("restarted", False))
        chains.append(row)
    return chains


def _traces(tr: Traces) -> dict[str, Any]:
    out: dict[str, Any] = {
        "acceptance_curve": tr.curve.tolist(),
        "traces": {"every": tr.every, **{k: getattr(tr, k).tolist() for k in TRACE_NAMES}},
    }
    ess: dict[str, float | None] = {}
    rhat: dict[str, float | None] = {}
    try:
        from service.samplers import diagnostics as dg
    except ImportError:  # pragma: no cover - diagnostics module not installed in this build
        return out
    for k in ("logit", "energy"):
        arr = getattr(tr, k)
        arr = arr[:, torch.isfinite(arr).all(0)]
        if arr.shape[1] < 4:
            continue
        ess[k] = float(dg.ess(arr))
        rhat[k] = float(dg.split_rhat(arr))
    out["ess"], out["rhat"] = ess, rhat
    return out


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
