"""The committed demo models: they load through the registry, calibrated, and their holdout was never trained on."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from service.registry import Registry
from service.zoo import classifier as clf
from service.zoo import toy
from service.zoo.digits import digits_split

MODELS = Path(__file__).resolve().parents[2] / "models"
DEMO = ("gaussians25", "swissroll", "digits-dcgan")
MAX_MODELS_BYTES = 5 * 2**20
MIN_CLASSIFIER_ACCURACY = 0.97


@pytest.fixture(scope="module")
def registry() -> Registry:
    reg = Registry(MODELS)
    reg.scan()
    return reg


def _training(name: str) -> dict:
    return tomllib.loads((MODELS / name / "1" / "training.toml").read_text())


@pytest.mark.parametrize("name", DEMO)
def test_demo_model_loads_calibrated(registry: Registry, name: str) -> None:
    m = registry.load(name, 1)
    assert m.manifest.calibration is not None, f"{name} ships uncalibrated: run gansampler-server calibrate"
    assert m.manifest.calibration.auc is not None and m.manifest.calibration.auc > 0.6
    real = m.pair.real
    assert real is not None and real.shape[1:] == tuple(m.manifest.output.shape)
    z = torch.randn(4, *m.pair.latent_shape)
    x = m.pair.generator(z)
    assert x.shape == (4, *m.manifest.output.shape)
    assert m.pair.logit(x).reshape(-1).shape == (4,)


@pytest.mark.parametrize("name", ["gaussians25", "swissroll"])
def test_toy_holdout_is_the_separate_stream(name: str) -> None:
    seed = _training(name)["seed"]
    x = load_file(str(MODELS / name / "1" / "holdout.safetensors"))["x"]
    assert torch.equal(x, toy.holdout_set(name, seed))


def test_digits_holdout_is_the_held_out_split_and_never_trained_on() -> None:
    sp = digits_split()
    x = load_file(str(MODELS / "digits-dcgan" / "1" / "holdout.safetensors"))["x"]
    assert torch.equal(x, sp.x[sp.holdout_idx])
    train = sp.x[sp.train_idx].flatten(1)
    assert float(torch.cdist(x.flatten(1), train).min()) > 0, "a held-out image also appears in the training split"


def test_classifier_is_accurate_on_the_held_out_split() -> None:
    d = MODELS / clf.CLASSIFIER_DIR
    model = clf.DigitsClassifier()
    model.load_state_dict(load_file(str(d / clf.WEIGHTS_FILE)))
    model.eval()
    sp = digits_split()
    acc = clf.accuracy(model, sp.x[sp.holdout_idx], sp.y[sp.holdout_idx])
    assert acc >= MIN_CLASSIFIER_ACCURACY
    meta = tomllib.loads((d / "classifier.toml").read_text())
    assert meta["holdout_accuracy"] == pytest.approx(acc, abs=1e-9)


def test_demo_models_stay_small() -> None:
    total = sum(p.stat().st_size for p in MODELS.rglob("*") if p.is_file())
    assert total < MAX_MODELS_BYTES


@pytest.mark.slow
def test_quality_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "q.md"
    script = MODELS.parent / "benchmarks" / "quality.py"
    args = ["--models", "gaussians25", "--samplers", "raw", "mh", "ddls", "--steps", "4", "--sweep", "1e-4"]
    subprocess.run([sys.executable, str(script), *args, "--out", str(out)], check=True, cwd=MODELS.parent, timeout=300)
    text = out.read_text()
    assert "| gaussians25@1 | mh |" in text
    assert "exact=False" in text  # ddls is flagged biased
    assert "DDLS step size sweep on gaussians25@1" in text
