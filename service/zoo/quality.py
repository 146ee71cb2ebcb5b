"""Sample-quality metrics for the demo models. Pure functions over tensors / arrays; no I/O, no models.

2-D models (the 25-Gaussian grid, the swiss roll) are scored against a :class:`ModeTarget`: a set of reference
points, each labelled with the mode (or curve segment) it belongs to, and the data's noise scale sigma.

- A sample is **high quality (HQ)** when its distance to the nearest reference point is at most
  ``HQ_SIGMAS`` (4) sigma; its mode is that point's label.
- A mode is **covered** when it receives at least ``min_count`` HQ samples. The default rule is
  ``min_count = max(1, ceil(COVER_FRACTION * n / K))``: at least 10% of the uniform share of the n samples over the
  K modes (for n = 2500 on 25 modes: 10 HQ samples).
- **Mode KL** is KL(p̂ ‖ uniform) = log K − H(p̂) of the histogram p̂ of HQ samples over the K modes (in nats;
  0 for a perfectly balanced set, log K when every HQ sample is in one mode; finite when modes are empty).
  With no HQ sample at all it is log K.

Digits are scored in the penultimate features of the digits classifier (:mod:`service.zoo.classifier`):

- **Fréchet distance** between Gaussians fitted to the features of the samples and of the held-out real split,
  ``‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1^½ Σ2 Σ1^½)^½)``, computed with symmetric eigendecompositions (numpy only).
- **Class coverage**: classes predicted for at least ``min_count`` samples (same default rule, K = 10), and the KL
  of the predicted-class histogram to uniform (sklearn's digits are balanced to within 2%).
- **Precision / recall** (Kynkäänniemi et al., 2019) in the same features: precision is the fraction of samples
  inside the union of the real points' k-NN balls (radius: distance to the k-th nearest other real point), recall
  the fraction of real points inside the samples' k-NN balls; k = ``PR_NEIGHBOURS``. FD mixes the two; a sampler
  that sharpens quality at the cost of diversity raises precision and lowers recall.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

HQ_SIGMAS = 4.0
COVER_FRACTION = 0.1
PR_NEIGHBOURS = 3


class ModeTarget(NamedTuple):
    """Reference points of a 2-D target.

    points: (M, 2) float, labels: (M,) int64 in [0, n_modes), sigma: the data noise scale.
    For a Gaussian mixture the points are the means (M = n_modes); for a curve they are a dense polyline whose
    labels are curve segments.
    """

    points: Tensor
    labels: Tensor
    sigma: float
    n_modes: int


class ModeReport(NamedTuple):
    """Quality of a 2-D sample set. ``counts`` is the (K,) histogram of HQ samples over modes."""

    n: int
    hq_fraction: float
    modes_covered: int
    n_modes: int
    mode_kl: float
    min_count: int
    counts: list[int]


class ClassReport(NamedTuple):
    """Quality of a digits sample set: Fréchet distance, precision / recall, classes covered, KL of the class
    histogram to uniform."""

    n: int
    frechet: float
    precision: float
    recall: float
    classes_covered: int
    n_classes: int
    class_kl: float
    min_count: int
    counts: list[int]


def default_min_count(n: int, n_modes: int, fraction: float = COVER_FRACTION) -> int:
    """``max(1, ceil(fraction * n / n_modes))``: the HQ samples a mode needs to count as covered."""
    if n_modes < 1:
        raise ValueError(f"n_modes must be >= 1, got {n_modes}")
    return max(1, math.ceil(fraction * n / n_modes))


def kl_to_uniform(counts: Tensor) -> float:
    """KL(p̂ ‖ uniform) in nats of a (K,) histogram; log K for an empty histogram."""
    k = counts.numel()
    total = float(counts.sum())
    if total <= 0:
        return math.log(k)
    p = counts.double() / total
    nz = p[p > 0]
    return float(math.log(k) + (nz * nz.log()).sum())


def nearest(x: Tensor, points: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """For x (N, 2) and points (M, 2): distance to the nearest point (N,) and its index (N,) int64."""
    dists, idx = [], []
    for start in range(0, x.shape[0], chunk):
        d = torch.cdist(x[start : start + chunk].double(), points.double())
        m = d.min(dim=1)
        dists.append(m.values)
        idx.append(m.indices)
    if not dists:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.int64)
    return torch.cat(dists), torch.cat(idx)


def mode_report(x: Tensor, target: ModeTarget, min_count: int | None = None) -> ModeReport:
    """HQ fraction, modes covered and mode KL of samples x (N, 2) against ``target`` (rules in the module doc).

    Non-finite samples count as low quality.
    """
    if x.dim() != 2 or x.shape[1] != target.points.shape[1]:
        raise ValueError(f"x must have shape (N, {target.points.shape[1]}), got {tuple(x.shape)}")
    n = x.shape[0]
    mc = default_min_count(n, target.n_modes) if min_count is None else min_count
    finite = torch.isfinite(x).all(1)
    dist, idx = nearest(torch.where(finite[:, None], x, torch.zeros_like(x)), target.points)
    hq = finite & (dist <= HQ_SIGMAS * target.sigma)
    labels = target.labels[idx[hq]]
    counts = torch.bincount(labels, minlength=target.n_modes)
    return ModeReport(
        n=n,
        hq_fraction=float(hq.double().mean()) if n else 0.0,
        modes_covered=int((counts >= mc).sum()),
        n_modes=target.n_modes,
        mode_kl=kl_to_uniform(counts),
        min_count=mc,
        counts=[int(c) for c in counts],
    )


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to features (N_a, F) and (N_b, F)."""
    a = np.asarray(feat_a, dtype=np.float64)
    b = np.asarray(feat_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (N, F) with equal F, got {a.shape} and {b.shape}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"need at least 2 samples on each side, got {a.shape[0]} and {b.shape[0]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    tr_sqrt = float(np.sqrt(np.clip(inner, 0.0, None)).sum())
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)


def _knn_radius(points: Tensor, k: int) -> Tensor:
    """(N,) distance from each point to its k-th nearest other point."""
    d = torch.cdist(points, points)
    return d.kthvalue(k + 1, dim=1).values  # the 1st smallest is the point itself (0)


def _coverage(queries: Tensor, centres: Tensor, radii: Tensor) -> float:
    inside = torch.cdist(queries, centres) <= radii[None, :]
    return float(inside.any(dim=1).double().mean())


def precision_recall(features: np.ndarray, real_features: np.ndarray, k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    """(precision, recall) of sample features (N, F) against real features (M, F); see the module doc."""
    f = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    r = torch.as_tensor(np.asarray(real_features), dtype=torch.float64)
    if f.dim() != 2 or r.dim() != 2 or f.shape[1] != r.shape[1]:
        raise ValueError(f"features must be (N, F) with equal F, got {tuple(f.shape)} and {tuple(r.shape)}")
    if min(f.shape[0], r.shape[0]) <= k:
        raise ValueError(f"need more than k = {k} points on each side, got {f.shape[0]} and {r.shape[0]}")
    return _coverage(f, r, _knn_radius(r, k)), _coverage(r, f, _knn_radius(f, k))


def class_report(
    features: np.ndarray,
    predicted: Tensor,
    real_features: np.ndarray,
    n_classes: int = 10,
    min_count: int | None = None,
) -> ClassReport:
    """Fréchet distance to the real features, classes covered and class KL of predicted labels (N,) int64."""
    n = int(predicted.numel())
    mc = default_min_count(n, n_classes) if min_count is None else min_count
    counts = torch.bincount(predicted.reshape(-1).long(), minlength=n_classes)
    precision, recall = precision_recall(features, real_features)
    return ClassReport(
        n=n,
        frechet=frechet_distance(features, real_features),
        precision=precision,
        recall=recall,
        classes_covered=int((counts >= mc).sum()),
        n_classes=n_classes,
        class_kl=kl_to_uniform(counts),
        min_count=mc,
        counts=[int(c) for c in counts],
    )
