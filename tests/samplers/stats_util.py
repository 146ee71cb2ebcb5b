"""Statistical checks with fixed seeds (every run sees the same numbers, so a check is pass/fail, not flaky).

Tolerances: with B independent chains, a sample mean has standard error sd/√B and a sample standard deviation
about sd/√(2B); we allow Z_TOL = 5 standard errors (a false alarm once in ~1.7 million for a correct sampler, while
the broken kernels in the break-it check miss by 20+). KS tests require p > KS_ALPHA = 1e-3.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from torch import Tensor

Z_TOL = 5.0
KS_ALPHA = 1e-3


def assert_normal(x: Tensor, mean: float, std: float) -> None:
    a = x.detach().double().flatten().cpu().numpy()
    n = a.size
    assert abs(a.mean() - mean) < Z_TOL * std / math.sqrt(n), (a.mean(), mean)
    assert abs(a.std() - std) < Z_TOL * std / math.sqrt(2 * n), (a.std(), std)
    p = stats.kstest(a, "norm", args=(mean, std)).pvalue
    assert p > KS_ALPHA, f"KS p={p:.2e}: mean {a.mean():.4f} sd {a.std():.4f} vs N({mean}, {std}²)"


def assert_fraction(hits: np.ndarray | Tensor, p: float) -> None:
    """The fraction of True in ``hits`` is p within Z_TOL binomial standard errors."""
    h = np.asarray(hits, dtype=np.float64)
    se = math.sqrt(p * (1 - p) / h.size)
    assert abs(h.mean() - p) < Z_TOL * se, (h.mean(), p, se)
