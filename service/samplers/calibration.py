"""Calibration of a discriminator's logit (docs/algorithms.md §2). Pure torch + stdlib.

A calibration C maps a raw logit d (discriminator, or WGAN critic) to a calibrated logit d~ = C(d), fitted so that
sigmoid(d~) is the probability that a sample is real, on a held-out real set against as many fresh fakes:

- ``platt``     d~ = a·d + b: logistic regression on the raw logit, fitted by Newton/IRLS in float64 with Platt's
                smoothed targets (y+ = (N+ + 1)/(N+ + 2), y- = 1/(N- + 2)) so separable data stays finite.
- ``isotonic``  a non-decreasing step fit by pool-adjacent-violators, probabilities clipped to [1e-6, 1 − 1e-6],
                stored as knots (raw logit, calibrated logit) and applied by piecewise-linear interpolation in
                logit space (constant beyond the end knots).
- ``identity``  d~ = d (responses are flagged ``uncalibrated``).

Every calibrated logit is finite for finite input and clamped to ±``LOGIT_BOUND`` for infinite input; NaN stays NaN
(the samplers count it as a non-finite proposal). Calibration stays in logit space: probabilities of exactly 0 or 1
never appear.

Quality (:func:`evaluate`): AUC (Mann–Whitney, ties averaged), Dawid's Z = Σ(y − p)/√Σp(1 − p) (|Z| < 2: well
calibrated), ECE over ``ECE_BINS`` equal-width bins, Brier score. :func:`fit_and_evaluate` fits on one half of a
fixed disjoint index split and evaluates on the other half.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

Method = Literal["platt", "isotonic", "identity"]
METHODS: tuple[str, ...] = ("platt", "isotonic", "identity")
DEFAULT_METHOD: Method = "platt"
PROB_EPS = 1e-6  # isotonic probabilities are clipped to [PROB_EPS, 1 - PROB_EPS]
LOGIT_BOUND = 1e4  # |calibrated logit| never exceeds this (only reached for infinite raw logits)
ECE_BINS = 10
NEWTON_MAX_ITER = 100
NEWTON_TOL = 1e-10
DEFAULT_SPLIT_SEED = 0
REPORT_KEYS = ("auc", "dawid_z", "ece", "brier", "n")


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


@dataclass(frozen=True)
class Calibration:
    """A fitted map raw logit -> calibrated logit.

    method: "platt" | "isotonic" | "identity".
    a, b:   the affine map of ``platt`` (a·d + b); 1, 0 otherwise.
    x, y:   the knots of ``isotonic``: raw logits, strictly increasing, and their calibrated logits (non-decreasing,
            within ±logit(1 − PROB_EPS)); empty otherwise.
    """

    method: str = "identity"
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method must be one of {METHODS}, got {self.method!r}")
        if self.method == "platt" and not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"platt a and b must be finite, got a={self.a!r}, b={self.b!r}")
        if self.method == "isotonic":
            if len(self.x) == 0 or len(self.x) != len(self.y):
                raise ValueError(f"isotonic needs as many x as y knots (>= 1), got {len(self.x)} and {len(self.y)}")
            if any(not math.isfinite(v) for v in (*self.x, *self.y)):
                raise ValueError("isotonic knots must be finite")
            if any(x1 <= x0 for x0, x1 in zip(self.x, self.x[1:], strict=False)):
                raise ValueError("isotonic x knots must be strictly increasing")
            if any(y1 < y0 for y0, y1 in zip(self.y, self.y[1:], strict=False)):
                raise ValueError("isotonic y knots must be non-decreasing")

    @property
    def is_identity(self) -> bool:
        return self.method == "identity"

    def apply(self, logits: Tensor) -> Tensor:
        """Calibrated logits, same shape and dtype as ``logits`` (any shape). Differentiable in ``logits``."""
        if self.method == "identity":
            out = logits
        elif self.method == "platt":
            out = logits * self.a + self.b
        else:
            out = self._interpolate(logits)
        return out.clamp(-LOGIT_BOUND, LOGIT_BOUND)

    def _interpolate(self, d: Tensor) -> Tensor:
        dtype = d.dtype if d.is_floating_point() else torch.float32
        xk = torch.tensor(self.x, dtype=dtype, device=d.device)
        yk = torch.tensor(self.y, dtype=dtype, device=d.device)
        d = d.to(dtype)
        if xk.numel() == 1:
            return torch.where(torch.isnan(d), d, yk[0].expand_as(d))
        dc = d.clamp(xk[0], xk[-1])
        idx = torch.searchsorted(xk, dc.detach().contiguous(), right=True).clamp(1, xk.numel() - 1)
        x0, x1, y0, y1 = xk[idx - 1], xk[idx], yk[idx - 1], yk[idx]
        gap = x1 - x0  # knots distinct in float64 may coincide in float32: no division by zero then
        w = torch.where(gap > 0, (dc - x0) / torch.where(gap > 0, gap, torch.ones_like(gap)), torch.zeros_like(gap))
        out = y0 + w * (y1 - y0)
        return torch.where(torch.isnan(d), d, out)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``[calibration]`` fields (without quality figures)."""
        if self.method == "platt":
            return {"method": "platt", "a": self.a, "b": self.b}
        if self.method == "isotonic":
            return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}
        return {"method": "identity"}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; quality figures (``auc``, ``dawid_z``, ``ece``, ``brier``, ``n``) are ignored."""
        method = d.get("method", DEFAULT_METHOD)
        known = {"method", *REPORT_KEYS} | {"platt": {"a", "b"}, "isotonic": {"x", "y"}}.get(str(method), set())
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"calibration: unknown field {unknown[0]!r} for method {method!r}")
        if method == "platt":
            if "a" not in d or "b" not in d:
                raise ValueError("calibration: platt needs both 'a' and 'b'")
            return cls("platt", a=float(d["a"]), b=float(d["b"]))
        if method == "isotonic":
            return cls("isotonic", x=tuple(float(v) for v in d.get("x", ())), y=tuple(float(v) for v in d.get("y", ())))
        return cls(str(method))


class CalibrationReport(NamedTuple):
    """Quality of a calibration on held-out data. n = number of scored samples (real + fake)."""

    auc: float
    dawid_z: float
    ece: float
    brier: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return self._asdict()


IDENTITY = Calibration("identity")


def _check_logits(name: str, t: Tensor) -> Tensor:
    t = torch.as_tensor(t).detach().reshape(-1).to(torch.float64).cpu()
    if t.numel() == 0:
        raise ValueError(f"{name} must hold at least one logit, got an empty tensor")
    bad = (~torch.isfinite(t)).sum().item()
    if bad:
        raise ValueError(f"{name} must be finite, got {bad} non-finite of {t.numel()}")
    return t


def _labelled(real_logits: Tensor, fake_logits: Tensor) -> tuple[Tensor, Tensor]:
    r = _check_logits("real_logits", real_logits)
    f = _check_logits("fake_logits", fake_logits)
    return torch.cat([r, f]), torch.cat([torch.ones_like(r), torch.zeros_like(f)])


def fit(real_logits: Tensor, fake_logits: Tensor, method: str = DEFAULT_METHOD) -> Calibration:
    """Fit a calibration of raw logits: real (N_r,) labelled 1, fake (N_f,) labelled 0."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "identity":
        return IDENTITY
    d, y = _labelled(real_logits, fake_logits)
    if method == "platt":
        return _fit_platt(d, y)
    return _fit_isotonic(d, y)


def _fit_platt(d: Tensor, y: Tensor) -> Calibration:
    n_pos, n_neg = float(y.sum()), float((1 - y).sum())
    t = torch.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    X = torch.stack([d, torch.ones_like(d)], 1)  # (N, 2)
    w = torch.tensor([0.0, math.log((n_pos + 1) / (n_neg + 1))], dtype=torch.float64)

    def nll(w: Tensor) -> float:
        s = X @ w
        return float((torch.nn.functional.softplus(s) - t * s).sum())

    loss = nll(w)
    for _ in range(NEWTON_MAX_ITER):
        p = torch.sigmoid(X @ w)
        g = X.T @ (p - t)
        h = (X * (p * (1 - p)).unsqueeze(1)).T @ X + 1e-12 * torch.eye(2, dtype=torch.float64)
        step = torch.linalg.solve(h, g)
        lr = 1.0
        while lr > 1e-10:  # backtracking keeps Newton monotone on badly scaled logits
            new_w = w - lr * step
            new_loss = nll(new_w)
            if new_loss <= loss + 1e-12:
                break
            lr *= 0.5
        w, converged = new_w, abs(loss - new_loss) <= NEWTON_TOL * max(1.0, abs(loss))
        loss = new_loss
        if converged or float(step.abs().max()) * lr < NEWTON_TOL:
            break
    return Calibration("platt", a=float(w[0]), b=float(w[1]))


def _fit_isotonic(d: Tensor, y: Tensor) -> Calibration:
    order = torch.argsort(d, stable=True)
    xs, ys = d[order].tolist(), y[order].tolist()
    # ties in x first: one point per distinct raw logit, weighted by its count
    ux: list[float] = []
    uy: list[float] = []
    uw: list[float] = []
    for xv, yv in zip(xs, ys, strict=True):
        if ux and xv == ux[-1]:
            uy[-1] += yv
            uw[-1] += 1.0
        else:
            ux.append(xv)
            uy.append(yv)
            uw.append(1.0)
    # pool adjacent violators: blocks of (weighted mean, weight, first index, last index)
    blocks: list[list[float]] = []
    for i, (sy, wv) in enumerate(zip(uy, uw, strict=True)):
        blocks.append([sy / wv, wv, i, i])
        while len(blocks) > 1 and blocks[-2][0] >= blocks[-1][0]:
            m2, w2, s2, _ = blocks[-2]
            m1, w1, _, e1 = blocks.pop()
            blocks[-1] = [(m2 * w2 + m1 * w1) / (w2 + w1), w2 + w1, s2, e1]
    kx: list[float] = []
    ky: list[float] = []
    for mean, _, first, last in blocks:
        yl = _logit(min(max(mean, PROB_EPS), 1 - PROB_EPS))
        for idx in (int(first), int(last)):
            if not kx or ux[idx] > kx[-1]:
                kx.append(ux[idx])
                ky.append(yl)
    return Calibration("isotonic", x=tuple(kx), y=tuple(ky))


def auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve (Mann–Whitney U with tied scores given the average rank)."""
    scores = scores.reshape(-1).to(torch.float64)
    labels = labels.reshape(-1).to(torch.float64)
    n_pos = float(labels.sum())
    n_neg = float(labels.numel()) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes, got {int(n_pos)} real and {int(n_neg)} fake")
    uniq, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    del uniq
    end = torch.cumsum(counts, 0).to(torch.float64)
    avg_rank = end - (counts.to(torch.float64) - 1) / 2
    rank_sum = float((avg_rank[inverse] * labels).sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def evaluate(calibration: Calibration, real_logits: Tensor, fake_logits: Tensor) -> CalibrationReport:
    """Score ``calibration`` on raw logits of real (label 1) and fake (label 0) samples."""
    d, y = _labelled(real_logits, fake_logits)
    p = torch.sigmoid(calibration.apply(d))
    dawid = float((y - p).sum()) / math.sqrt(max(float((p * (1 - p)).sum()), 1e-300))
    bins = (p * ECE_BINS).long().clamp(0, ECE_BINS - 1)
    ece = 0.0
    for b in range(ECE_BINS):
        m = bins == b
        k = int(m.sum())
        if k:
            ece += k / p.numel() * abs(float(y[m].mean()) - float(p[m].mean()))
    brier = float(((p - y) ** 2).mean())
    return CalibrationReport(auc=auc(p, y), dawid_z=dawid, ece=ece, brier=brier, n=int(p.numel()))


def split_halves(n: int, seed: int = DEFAULT_SPLIT_SEED) -> tuple[Tensor, Tensor]:
    """A fixed disjoint split of range(n): (fit indices, eval indices), sizes ceil(n/2) and floor(n/2)."""
    if n < 2:
        raise ValueError(f"need at least 2 samples to split into fit and eval halves, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    half = (n + 1) // 2
    return perm[:half], perm[half:]


def fit_and_evaluate(
    real_logits: Tensor, fake_logits: Tensor, method: str = DEFAULT_METHOD, seed: int = DEFAULT_SPLIT_SEED
) -> tuple[Calibration, CalibrationReport]:
    """Fit on one half of real and fake logits, evaluate on the other (disjoint, fixed by ``seed``)."""
    r = _check_logits("real_logits", real_logits)
    f = _check_logits("fake_logits", fake_logits)
    rf, re_ = split_halves(r.numel(), seed)
    ff, fe = split_halves(f.numel(), seed + 1)
    cal = fit(r[rf], f[ff], method)
    return cal, evaluate(cal, r[re_], f[fe])
