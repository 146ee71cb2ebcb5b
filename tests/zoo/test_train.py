"""Training is deterministic, writes the registry layout, and the digits split is disjoint."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from service.zoo import toy
from service.zoo.digits import HOLDOUT_FRACTION, digits_split, split_indices
from service.zoo.manifest import sha256_file
from service.zoo.train import TRAIN_THREADS, train

TINY_STEPS = 20
TINY_REFINE = 5


@pytest.fixture(autouse=True)
def train_threads() -> Iterator[None]:
    """Train as the CLI does, on TRAIN_THREADS threads (two spinning threads crawl on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    yield
    torch.set_num_threads(before)


def _weights(vdir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {f: load_file(str(vdir / f)) for f in ("generator.safetensors", "discriminator.safetensors")}


def _assert_same(a: dict[str, dict[str, torch.Tensor]], b: dict[str, dict[str, torch.Tensor]]) -> None:
    for f in a:
        assert a[f].keys() == b[f].keys()
        for k in a[f]:
            assert torch.equal(a[f][k], b[f][k]), f"{f}:{k} differs between two runs"


@pytest.mark.parametrize("name", ["gaussians25", "swissroll", "digits-dcgan"])
def test_tiny_training_is_deterministic_and_seeded(tmp_path: Path, name: str) -> None:
    a = train(name, tmp_path / "a", seed=3, steps=TINY_STEPS, refine=TINY_REFINE)
    b = train(name, tmp_path / "b", seed=3, steps=TINY_STEPS, refine=TINY_REFINE)
    c = train(name, tmp_path / "c", seed=4, steps=TINY_STEPS, refine=TINY_REFINE)
    _assert_same(_weights(a), _weights(b))
    wa, wc = _weights(a), _weights(c)
    assert any(not torch.equal(wa[f][k], wc[f][k]) for f in wa for k in wa[f]), "the seed changes nothing"


def test_written_manifest_hashes_its_files(tmp_path: Path) -> None:
    vdir = train("gaussians25", tmp_path, seed=0, steps=2, refine=1)
    m = tomllib.loads((vdir / "model.toml").read_text())
    assert (m["name"], m["version"]) == ("gaussians25", 1)
    assert m["generator"]["sha256"] == sha256_file(vdir / m["generator"]["file"])
    assert m["discriminator"]["sha256"] == sha256_file(vdir / m["discriminator"]["file"])
    assert m["data"]["holdout_sha256"] == sha256_file(vdir / m["data"]["holdout"])
    x = load_file(str(vdir / m["data"]["holdout"]))["x"]
    assert x.shape == (toy.HOLDOUT_SIZE, 2)


def test_toy_holdout_comes_from_its_own_stream() -> None:
    h = toy.holdout_set("gaussians25", seed=0, n=256)
    train_first = toy.sample_gaussians25(256, torch.Generator().manual_seed(0))
    assert torch.equal(h, toy.holdout_set("gaussians25", seed=0, n=256))
    assert torch.cdist(h, train_first).min() > 0


def test_digits_split_is_disjoint_stratified_and_fixed() -> None:
    sp = digits_split()
    train_idx, hold_idx = sp.train_idx, sp.holdout_idx
    assert set(train_idx.tolist()).isdisjoint(hold_idx.tolist())
    assert len(train_idx) + len(hold_idx) == sp.x.shape[0]
    for c in range(10):
        n_c = int((sp.y == c).sum())
        assert int((sp.y[hold_idx] == c).sum()) == round(HOLDOUT_FRACTION * n_c)
    again = split_indices(sp.y)
    assert torch.equal(again[0], train_idx) and torch.equal(again[1], hold_idx)
    assert sp.x.shape[1:] == (1, 16, 16)
    assert float(sp.x.min()) >= -1.0 and float(sp.x.max()) <= 1.0


def test_bad_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="name must be one of"):
        train("ring8", tmp_path, seed=0)


@pytest.mark.slow
def test_cli_writes_identical_files_twice(tmp_path: Path) -> None:
    for out in ("a", "b"):
        cmd = [sys.executable, "-m", "service.zoo.train", "gaussians25", "--out", str(tmp_path / out)]
        subprocess.run([*cmd, "--steps", "10", "--refine-steps", "2"], check=True, capture_output=True)
    for f in ("generator.safetensors", "discriminator.safetensors", "holdout.safetensors", "model.toml"):
        assert (tmp_path / "a/gaussians25/1" / f).read_bytes() == (tmp_path / "b/gaussians25/1" / f).read_bytes()
