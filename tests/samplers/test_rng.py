"""Counter-based streams: values in range, the right law, keyed by (seed, chain, t, draw) only."""

from __future__ import annotations

import math

import torch
from scipy import stats

from service.samplers.rng import Streams, integers, normal, uniform


def test_uniform_range_and_law() -> None:
    u = uniform(Streams.for_request(1, 20000), 0, 1)
    assert ((u > 0) & (u < 1)).all()
    assert stats.kstest(u.double().numpy(), "uniform").pvalue > 1e-3


def test_normal_law_and_independence() -> None:
    s = Streams.for_request(2, 4000)
    z = normal(s, 3, 1, (5,)).double()
    assert stats.kstest(z.flatten().numpy(), "norm").pvalue > 1e-3
    c = torch.corrcoef(z.T) - torch.eye(5, dtype=torch.float64)
    assert c.abs().max() < 5 / math.sqrt(4000)
    # different t, draw, chain and seed give unrelated numbers
    for other in (normal(s, 4, 1, (5,)), normal(s, 3, 2, (5,)), normal(Streams.for_request(3, 4000), 3, 1, (5,))):
        assert abs(float(torch.corrcoef(torch.stack([z.flatten(), other.double().flatten()]))[0, 1])) < 0.02


def test_keyed_by_row_not_by_batch() -> None:
    s = Streams.for_request(9, 10)
    t = torch.arange(10)
    full = normal(s, t, 1, (4,))
    one = normal(Streams(s.seed[6:7], s.chain[6:7]), t[6:7], 1, (4,))
    assert torch.equal(full[6:7], one)
    assert torch.equal(normal(s, t, 1, (3,)), full[:, :3])  # element i does not depend on the shape's size
    assert torch.equal(uniform(s, t, 2), uniform(s, t, 2))


def test_integers_range() -> None:
    i = integers(Streams.for_request(4, 5000), 0, 5, 7)
    assert i.min() >= 0 and i.max() < 7 and i.unique().numel() == 7


def test_cached_chain_prefix_gives_the_same_numbers_as_computing_it_per_draw() -> None:
    # for_request caches the (seed, chain) key lanes; Streams built from bare tensors compute them per draw
    cached = Streams.for_request(2**62 + 11, 33, first_chain=4)
    bare = Streams(cached.seed, cached.chain)
    assert cached.prefix is not None and bare.prefix is None
    t = torch.arange(33) * 97
    assert torch.equal(normal(cached, t, 1, (3, 2)), normal(bare, t, 1, (3, 2)))
    assert torch.equal(uniform(cached, t, 2), uniform(bare, t, 2))
