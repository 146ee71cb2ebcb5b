"""Counter-based streams: values in range, the right law, keyed by (seed, chain, t, draw) only."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from service.samplers import rng
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


@pytest.mark.parametrize("first_chain", [4, 2**32 - 7])  # the chains' high words: all zero, or some not
def test_cached_chain_prefix_gives_the_same_numbers_as_computing_it_per_draw(first_chain: int) -> None:
    # for_request caches the (seed, chain) key lanes (the seed's absorbed once, in Python integers); Streams built
    # from bare tensors compute them per draw
    cached = Streams.for_request(2**62 + 11, 33, first_chain=first_chain)
    bare = Streams(cached.seed, cached.chain)
    assert cached.prefix is not None and bare.prefix is None
    t = torch.arange(33) * 97
    assert torch.equal(normal(cached, t, 1, (3, 2)), normal(bare, t, 1, (3, 2)))
    assert torch.equal(uniform(cached, t, 2), uniform(bare, t, 2))


def test_host_path_gives_the_same_bits_as_the_tensor_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # On a CPU the hash runs in numpy uint32; accelerators run it in int64 torch ops. Force the torch path on the
    # CPU and compare every draw, with t beyond 2**32 and the largest seed.
    s = Streams.for_request(2**63 - 1, 37, first_chain=2**40)
    t = torch.arange(37) * (2**33 + 3)
    assert (rng._chain_prefix_np(s.seed.numpy(), s.chain.numpy()) == rng._chain_prefix_tensor(s.seed, s.chain).numpy()).all()
    for tt in (t, 0, 2**35 + 1):
        assert (rng._bits_np(s, tt, 3, 5).astype("int64") == rng._bits(s, tt, 3, 5).numpy()).all()
    host = (normal(s, t, 1, (3, 2)), uniform(s, t, 2, (4,)), uniform(s, t, 2, (), torch.float64), integers(s, t, 4, 999))
    monkeypatch.setattr(rng, "_on_host", lambda streams: False)
    tensor = (normal(s, t, 1, (3, 2)), uniform(s, t, 2, (4,)), uniform(s, t, 2, (), torch.float64), integers(s, t, 4, 999))
    for a, b in zip(host, tensor, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_numbers_are_pinned_across_releases() -> None:
    # A request is reproducible from its seed across gansampler versions: these values must never change.
    s = Streams.for_request(12345, 3, first_chain=2**33)
    t = torch.tensor([0, 7, 2**40])
    expected_normal = [
        [-0.8959099650382996, 0.40085461735725403, 1.0358021259307861],
        [0.22803720831871033, -1.0937979221343994, -0.7343077063560486],
        [-0.112838514149189, 0.2695581614971161, 0.4374510943889618],
    ]
    assert normal(s, t, 1, (3,)).tolist() == expected_normal
    assert uniform(s, t, 2).tolist() == [0.04917129874229431, 0.7070919275283813, 0.5624293088912964]
    assert integers(s, 5, 4, 1000).tolist() == [127, 312, 493]
