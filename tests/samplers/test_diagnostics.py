"""Pure diagnostics: ESS, split-R-hat, MMD to the prior, the typical set, and the JSON summary."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from service.samplers.diagnostics import ess, latent_mmd_to_prior, split_rhat, summarize, typical_set
from tests.samplers.analytic import gaussian_target_pair
from tests.samplers.helpers import make, run


def _ar1(phi: float, chains: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((chains, n))
    x = np.zeros((chains, n))
    x[:, 0] = e[:, 0] / math.sqrt(1 - phi**2)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def test_ess_iid_and_ar1() -> None:
    rng = np.random.default_rng(0)
    assert 0.85 * 4000 < ess(rng.standard_normal(4000)) < 1.15 * 4000
    x = _ar1(0.9, 4, 5000, 1)
    want = 20000 * (1 - 0.9) / (1 + 0.9)  # integrated autocorrelation time (1 + phi) / (1 - phi)
    assert 0.8 * want < ess(x) < 1.2 * want
    assert math.isnan(ess(np.ones(100))) and math.isnan(ess(np.arange(3.0)))
    assert ess(torch.from_numpy(x)) == ess(x)


def test_split_rhat() -> None:
    x = _ar1(0.5, 4, 2000, 2)
    assert abs(split_rhat(x) - 1.0) < 0.01
    assert split_rhat(x + np.arange(4)[:, None]) > 1.1  # chains in different places
    drift = x + np.linspace(0, 3, 2000)[None, :]  # each chain drifts: its halves disagree
    assert split_rhat(drift) > 1.1


def test_latent_mmd_and_typical_set() -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(1500, 8, generator=g)
    assert abs(latent_mmd_to_prior(z)) < 2e-3
    assert latent_mmd_to_prior(z * 1.3) > 10 * abs(latent_mmd_to_prior(z))
    assert latent_mmd_to_prior(z + 0.5) > 10 * abs(latent_mmd_to_prior(z))
    ts = typical_set(z)
    zs, zs_small = ts["z_score"], typical_set(z * 0.5)["z_score"]
    assert zs is not None and zs_small is not None
    assert abs(zs) < 4 and ts["sqrt_dz"] == math.sqrt(8)
    assert zs_small < -20


def test_summary_is_json_and_consistent() -> None:
    algo = make("mh", gaussian_target_pair())
    r = run(algo, seed=61, n=6, steps=20, trace_every=4)
    d = summarize(r.stats, r.extras, exact=algo.exact(), traces=r.traces, curve=r.curve, first_chain=10)
    json.dumps(d, allow_nan=False)
    assert d["exact"] is True and d["proposals"] == 120 and d["accepted"] == int(r.stats.accepted.sum())
    assert [c["chain"] for c in d["chains"]] == list(range(10, 16))
    for c, a, s in zip(d["chains"], r.stats.accepted.tolist(), r.stats.acceptance_sum.tolist(), strict=True):
        assert c["accepted"] == a and c["distinct_states"] == a + 1
        assert math.isclose(c["acceptance_rate"], s / 20, rel_tol=1e-6)
        assert c["restarted"] is False
    assert math.isclose(d["acceptance_rate"], float(np.mean([c["acceptance_rate"] for c in d["chains"]])))
    assert len(d["traces"]["logit"]) == 6 and len(d["traces"]["logit"][0]) == 6
    assert set(d["ess"]) == set(d["rhat"]) == {"logit", "energy", "z_norm"}
    assert len(d["acceptance_curve"]) == 20


def test_sampler_specific_summaries() -> None:
    sir = run(make("sir", gaussian_target_pair()), seed=62, n=10, steps=50)
    s = summarize(sir.stats, sir.extras, exact=True)["sampler"]
    assert 1.0 <= s["ess"] <= 50 and 0 < s["max_weight"] <= 1
    drs = run(make("drs", gaussian_target_pair(), {"logit_max": 2.0}), seed=63, n=50, steps=100)
    s = summarize(drs.stats, drs.extras, exact=True)["sampler"]
    assert s["logit_max"] == 2.0 and s["exhausted"] == 0
    assert math.isclose(s["realised_acceptance"], 50 / int(drs.extras["tries"].sum()))
    json.dumps(s, allow_nan=False)
    assert summarize(drs.stats, drs.extras, exact=True)["exact"] is True
    short = run(make("drs", gaussian_target_pair(), {"logit_max": 2.0}), seed=63, n=50, steps=1)
    out = summarize(short.stats, short.extras, exact=True)  # rows out of tries return a rejected G sample
    assert out["sampler"]["exhausted"] > 0 and out["exact"] is False


def test_summaries_at_every_level_run_no_torch_op() -> None:
    """The server summarizes every response outside its device worker: on the event loop, or in a pool thread for
    a large body. A torch op there releases the GIL (and can wait for the worker to give it back), and a parallel
    one starts a second OpenMP thread team, which slowed every later step of a served MLP about 2x after one
    ``traces`` request. So no level, traces (ESS, split-R-hat) and the acceptance curve included, may dispatch a torch
    op of its own. (``Tensor.numpy()`` dispatches a ``detach`` from C++ for its view; that one does not count.)"""
    from tests.torch_ops import RecordOps

    for name in ("mh", "drs", "sir", "ddls"):
        algo = make(name, gaussian_target_pair())
        r = run(algo, seed=62, n=5, steps=12, trace_every=2)
        with RecordOps() as rec:
            d = summarize(r.stats, r.extras, exact=algo.exact(), chains=True)
            t = summarize(r.stats, r.extras, exact=algo.exact(), traces=r.traces, curve=r.curve)
        assert rec.ops == [], (name, rec.ops)
        assert len(d["chains"]) == 5 and d["proposals"] == int(r.stats.proposals.sum())
        assert set(t["ess"]) == {"logit", "energy", "z_norm"} and t["acceptance_curve"]
        with RecordOps() as rec:
            r.stats.proposals + 1
        assert rec.ops, "the recorder sees torch ops"
