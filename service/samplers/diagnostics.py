"""Diagnostics as pure functions over tensors and arrays (NumPyro's ``diagnostics.py`` split).

- :func:`summarize`: the JSON-ready per-request summary and per-chain list of ``docs/api.md``'s ``diagnostics``.
- :func:`ess`: effective sample size of scalar traces (Geyer's initial monotone sequence, multi-chain, as in
  Stan / NumPyro).
- :func:`split_rhat`: split-R̂ across chains.
- :func:`latent_mmd_to_prior`: MMD² between latents and the prior N(0, I), in closed form on the prior side.
- :func:`typical_set`: ‖z‖ against √dz (under the prior ‖z‖² ~ χ²_dz).

Nothing here is called inside a step; conversions to Python numbers happen once per request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from service.samplers.driver import ChainStats, Traces

ArrayLike = Any
"""A tensor, a numpy array or nested lists of numbers."""
MMD_MAX_POINTS = 2000
""":func:`latent_mmd_to_prior` uses at most this many latents (its cost is quadratic)."""
CURVE_MAX_POINTS = 200
"""The acceptance curve in a summary is thinned to at most this many points."""


def _num(v: float | Tensor | np.generic) -> float | None:
    """A JSON-safe float: non-finite values become None."""
    v = float(v)
    return v if math.isfinite(v) else None


def _f64(x: ArrayLike) -> np.ndarray:
    """A float64 numpy array (tensors on any device, numpy arrays and nested lists)."""
    if isinstance(x, Tensor):
        return host_array(x).astype(np.float64)
    return np.asarray(x, dtype=np.float64)


def host_array(x: Tensor | np.ndarray) -> np.ndarray:
    """A numpy view of a tensor, copied to the host first when it is on a device; bfloat16 (which numpy lacks)
    becomes float32, exactly, by shifting its bits. No torch kernel runs for a host tensor, so callers outside the
    device worker (the event loop, its pool threads) start no OpenMP thread team (``service.engine.threads``)."""
    if isinstance(x, np.ndarray):
        return x
    t = x.detach() if x.requires_grad else x
    if t.device.type != "cpu":
        t = t.cpu()
    if t.dtype == torch.bfloat16:
        bits = t.view(torch.int16).numpy().astype(np.uint16).astype(np.uint32)
        return (bits << np.uint32(16)).view(np.float32)
    return t.numpy()


def _mean_finite(a: np.ndarray) -> float | None:
    """Mean of the finite values of a float64 array, None when there are none."""
    a = a[np.isfinite(a)]
    return _num(a.mean()) if a.size else None


def chain_acceptance(stats: ChainStats) -> np.ndarray:
    """Per-chain acceptance rate, mean of min(1, alpha) over its proposals; 1.0 for rows with none (one-shot).
    (B,) float64."""
    p = _f64(stats.proposals)
    s = _f64(stats.acceptance_sum)
    return np.where(p > 0, s / np.maximum(p, 1.0), 1.0)


def summarize(
    stats: ChainStats,
    extras: Mapping[str, Tensor],
    *,
    exact: bool | None = None,
    chains: bool = True,
    traces: Traces | None = None,
    curve: Tensor | None = None,
    first_chain: int = 0,
) -> dict[str, Any]:
    """The diagnostics of one request, JSON-ready.

    stats: ChainStats (B,) of the request's chains; extras: ``algo.chain_extras`` (B,) each.
    exact: ``algo.exact()``, reported as ``exact`` when given. chains: include the per-chain list.
    traces / curve: from :func:`~service.samplers.driver.run_chains`; adds ``traces``, ``ess``, ``rhat`` and the
    thinned ``acceptance_curve``. first_chain: index of the first row within the request.

    Every level is computed in numpy, so the server's event loop and the pool thread that encodes a large body,
    which call this for every response, run no torch op (``service.engine.worker``'s rule). A parallel torch op
    there gives that thread an OpenMP team beside the worker's, which slowed every later step about 2x
    (``service.engine.threads``); and any torch op releases the GIL and may wait up to the interpreter's switch
    interval to get it back. Beside a thread running pure Python, a summary of 256 chains took a median of 180 ms
    with torch ops against 0.07 ms in numpy.
    """
    rate = chain_acceptance(stats)
    accepted = host_array(stats.accepted)
    nonfinite = host_array(stats.nonfinite)
    li = _f64(stats.logit_initial)
    lf = _f64(stats.logit_final)
    some = rate.size > 0
    out: dict[str, Any] = {
        "acceptance_rate": _num(rate.mean()) if some else None,
        "accepted": int(accepted.sum()),
        "proposals": int(host_array(stats.proposals).sum()),
        "nonfinite": int(nonfinite.sum()),
        "logit_initial_mean": _mean_finite(li) if some else None,
        "logit_final_mean": _mean_finite(lf) if some else None,
        "sampler": sampler_summary(extras),
    }
    if exact is not None:
        # DRS rows that ran out of tries return their last, rejected proposal (a plain G sample): not exact
        exhausted = extras.get("exhausted")
        out["exact"] = bool(exact) and not (exhausted is not None and bool(host_array(exhausted).any()))
    if chains:
        restarted = extras.get("restarted")
        r = host_array(restarted).tolist() if restarted is not None else [False] * len(rate)
        acc_l, rate_l, li_l, lf_l, nf_l = accepted.tolist(), rate.tolist(), li.tolist(), lf.tolist(), nonfinite.tolist()
        out["chains"] = [
            {
                "chain": first_chain + i,
                "accepted": int(acc_l[i]),
                "acceptance_rate": _num(rate_l[i]),
                "logit_initial": _num(li_l[i]),
                "logit_final": _num(lf_l[i]),
                "restarted": bool(r[i]),
                "nonfinite": int(nf_l[i]),
                # every accepted proposal is a new point (continuous proposals), plus the initial state
                "distinct_states": int(acc_l[i]) + 1,
            }
            for i in range(len(rate_l))
        ]
    if curve is not None:
        out.update(curve_summary(curve))
    if traces is not None:
        out.update(trace_summary(traces.every, {k: _f64(getattr(traces, k)).T for k in TRACE_NAMES}))
    return out


TRACE_NAMES = ("logit", "energy", "z_norm")


def curve_summary(curve: ArrayLike) -> dict[str, Any]:
    """The per-step acceptance curve, thinned to at most ``CURVE_MAX_POINTS`` points (empty dict for no steps)."""
    c = _f64(curve)
    if not c.size:
        return {}
    every = max(1, math.ceil(c.size / CURVE_MAX_POINTS))
    return {"acceptance_curve_every": every, "acceptance_curve": [_num(v) for v in c[::every].tolist()]}


def trace_summary(every: int, per_chain: Mapping[str, ArrayLike]) -> dict[str, Any]:
    """``traces``, ``ess`` and ``rhat`` of per-chain traces (name -> (C, T), recorded every ``every`` steps)."""
    chains = {k: _f64(v) for k, v in per_chain.items()}
    return {
        "traces": {"every": every, **{k: [[_num(v) for v in row] for row in a.tolist()] for k, a in chains.items()}},
        "ess": {k: _num(ess(a)) for k, a in chains.items()},
        "rhat": {k: _num(split_rhat(a)) for k, a in chains.items()},
    }


def sampler_summary(extras: Mapping[str, Tensor]) -> dict[str, Any]:
    """Request-level figures from ``chain_extras``: SIR's ESS and max weight, DRS's d~_max and realised acceptance,
    MH-GAN's restarts, DDLS's final step size (numpy, as :func:`summarize`)."""
    x = {k: host_array(v) for k, v in extras.items()}
    out: dict[str, Any] = {}
    if "ess" in x:
        out["ess"] = _num(_f64(x["ess"]).mean())
        out["ess_min"] = _num(_f64(x["ess"]).min())
    if "max_weight" in x:
        out["max_weight"] = _num(_f64(x["max_weight"]).mean())
    if "tries" in x and "accepted" in x:
        tries = int(x["tries"].sum())
        acc = int(x["accepted"].sum())
        out["realised_acceptance"] = acc / tries if tries else None
        out["exhausted"] = len(x["tries"]) - acc
    if "above_max" in x:
        out["above_max"] = int(x["above_max"].sum())
    if "logit_max" in x and x["logit_max"].size:
        out["logit_max"] = _num(x["logit_max"][0])
    if "restarted" in x:
        out["restarted"] = int(x["restarted"].sum())
    if "step_size_final" in x and x["step_size_final"].size:
        out["step_size_final"] = _num(_f64(x["step_size_final"]).mean())
    return out


def _autocovariance(x: np.ndarray) -> np.ndarray:
    """Autocovariance along the last axis by FFT, (..., N)."""
    n = x.shape[-1]
    m = 1 << (2 * n - 1).bit_length()
    xc = x - x.mean(axis=-1, keepdims=True)
    f = np.fft.rfft(xc, n=m, axis=-1)
    acov = np.fft.irfft(f * f.conj(), n=m, axis=-1)[..., :n]
    return acov / n


def _chains(trace: ArrayLike) -> np.ndarray | None:
    """(C, T) float64, or None when too short (T < 4) or not finite."""
    x = _f64(trace)
    if x.ndim == 1:
        x = x[None]
    if x.shape[1] < 4 or not bool(np.isfinite(x).all()):
        return None
    return x


def ess(trace: ArrayLike) -> float:
    """Effective sample size of a scalar trace: (T,) one chain or (C, T) C chains. NaN for a constant or too-short
    trace (T < 4).

    rho_k is the multi-chain autocorrelation (Gelman et al., BDA3 §11.5); the sum over lags is truncated by Geyer's
    initial positive sequence and made monotone, and ESS = C·T / (−1 + 2 Σ_pairs P_k), capped at C·T·log10(C·T)
    as in Stan. numpy throughout (its FFT is single-threaded): the server computes this for a ``traces`` response
    outside its device worker, where a parallel torch op would start a second OpenMP thread team and slow every
    later step (``service.engine.threads``).
    """
    x = _chains(trace)
    if x is None:
        return float("nan")
    c, n = x.shape
    acov = _autocovariance(x)
    mean_var = float(acov[:, 0].mean()) * n / (n - 1)
    var_plus = mean_var * (n - 1) / n
    if c > 1:
        var_plus += float(x.mean(axis=1).var(ddof=1))
    if var_plus <= 0:
        return float("nan")
    rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    m = n - (n % 2)
    pairs = rho[0:m:2] + rho[1:m:2]
    neg = np.flatnonzero(pairs < 0)
    if neg.size:
        pairs = pairs[: int(neg[0])]
    pairs = np.minimum.accumulate(pairs)
    tau = -1.0 + 2.0 * float(pairs.sum())
    return float(c * n / max(tau, 1.0 / math.log10(max(c * n, 10))))


def split_rhat(traces: ArrayLike) -> float:
    """Split-R̂ of (C, T) traces (each chain split into two halves). NaN when T < 4 or the traces are constant."""
    x = _chains(traces)
    if x is None:
        return float("nan")
    n = x.shape[1]
    half = n // 2
    s = np.concatenate([x[:, :half], x[:, n - half :]], axis=0)
    w = float(s.var(axis=1, ddof=1).mean())
    b_over_n = float(s.mean(axis=1).var(ddof=1))
    if w <= 0:
        return float("nan")
    var_plus = (half - 1) / half * w + b_over_n
    return math.sqrt(var_plus / w)


def latent_mmd_to_prior(z: Tensor, bandwidth2: float | None = None) -> float:
    """Unbiased MMD² between latents z (N, *latent_shape) and the prior N(0, I), Gaussian kernel
    k(a, b) = exp(−‖a − b‖² / (2 s²)) with s² = ``bandwidth2`` (default dz).

    The prior-side expectations are closed-form: E_y k(a, y) = (s²/(s²+1))^(d/2) exp(−‖a‖² / (2(s²+1))) and
    E_{y,y'} k(y, y') = (s²/(s²+2))^(d/2). About 0 for z ~ p0; uses the first ``MMD_MAX_POINTS`` latents.
    """
    a = z.detach().flatten(1)[:MMD_MAX_POINTS].to("cpu", torch.float64)
    n, d = a.shape
    if n < 2:
        return float("nan")
    s2 = float(d) if bandwidth2 is None else float(bandwidth2)
    sq = a.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * a @ a.T).clamp(min=0.0)
    k = torch.exp(-d2 / (2.0 * s2))
    kzz = (k.sum() - k.diagonal().sum()) / (n * (n - 1))
    kzy = ((s2 / (s2 + 1.0)) ** (d / 2.0) * torch.exp(-sq / (2.0 * (s2 + 1.0)))).mean()
    kyy = (s2 / (s2 + 2.0)) ** (d / 2.0)
    return float(kzz - 2.0 * kzy + kyy)


def typical_set(z: Tensor) -> dict[str, float | None]:
    """‖z‖ against the prior's typical set: under N(0, I_d), ‖z‖² ~ χ²_d (mean d, variance 2d).

    Returns the mean ‖z‖, √d, and ``z_score`` = (mean ‖z‖² − d) / √(2d / N) (|z_score| ≲ 3 for prior-like latents).
    """
    a = z.detach().flatten(1).to("cpu", torch.float64)
    n, d = a.shape
    sq = a.pow(2).sum(1)
    return {
        "z_norm_mean": _num(sq.sqrt().mean()) if n else None,
        "sqrt_dz": math.sqrt(d),
        "z_score": _num((sq.mean() - d) / math.sqrt(2.0 * d / n)) if n else None,
    }


def exactness(exact: bool) -> str:
    """``"exact"`` or ``"biased"`` (ddls, drs with gamma shift)."""
    return "exact" if exact else "biased"
