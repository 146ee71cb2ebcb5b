"""Sample encodings: JSON lists carry non-finite values as null, finite ones exactly."""

from __future__ import annotations

import math

import torch

from service.api.encoding import to_lists


def test_finite_samples_are_plain_float_lists() -> None:
    x = torch.tensor([[0.1, -2.5], [3.0, 1e-30]])
    out = to_lists(x)
    assert out == x.tolist()
    assert all(type(v) is float for row in out for v in row)


def test_non_finite_values_become_none_at_any_depth() -> None:
    x = torch.tensor([[[0.5, math.nan]], [[math.inf, -math.inf]], [[1.0, 2.0]]])
    assert to_lists(x) == [[[0.5, None]], [[None, None]], [[1.0, 2.0]]]
