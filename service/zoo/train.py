"""``python -m service.zoo.train NAME [--out models] [--seed 0]``: train a demo model into the registry layout.

NAME is one of ``gaussians25``, ``swissroll``, ``digits-dcgan`` (written to ``<out>/<name>/<version>/``, see
:mod:`service.zoo.manifest`) or ``digits-classifier`` (the evaluation classifier, written to
``<out>/_eval/digits-classifier/``; the registry skips names that start with ``_``), or ``all``.

Determinism: one CPU thread (``TRAIN_THREADS``), ``torch.use_deterministic_algorithms(True)``, every random number
from generators seeded by ``--seed``: the same command writes byte-identical weights. ``--steps`` and
``--refine-steps`` override the step counts (tests use tiny runs). The recipes are in :mod:`service.zoo.toy`,
:mod:`service.zoo.digits` and :mod:`service.zoo.classifier`. Run ``gansampler-server calibrate NAME`` afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomli_w
import torch
from safetensors.torch import save_file

from service.zoo import classifier as clf
from service.zoo import digits, toy
from service.zoo.manifest import ModelSpec, sha256_file, state_tensors, write_version
from service.zoo.quality import mode_report

TRAIN_THREADS = 1
DEFAULT_SEED = 0
DEFAULT_OUT = "models"
DEFAULT_VERSION = 1
RAW_EVAL_SAMPLES = 2500
RAW_EVAL_SEED_OFFSET = 7
TOY_NAMES = tuple(toy.TOY_DATA)
NAMES = (*TOY_NAMES, "digits-dcgan", "digits-classifier")
CLASSIFIER_META = "classifier.toml"

# Per-model sampler defaults written into the manifests. Chain lengths follow docs/algorithms.md; DDLS's step size is
# the one benchmarks/quality.py measured to improve on raw G on each model (eps = 0.01 is worse than raw on the
# 25-Gaussian grid and on the swiss roll: see benchmarks/quality_results.md).
DDLS_STEP_SIZE = {"gaussians25": 1e-4, "swissroll": 3e-5, "digits-dcgan": 3e-5}


def sampler_defaults(name: str) -> dict[str, dict[str, float | int]]:
    """The ``[samplers.*]`` tables of demo model ``name``."""
    return {
        "mh": {"steps": 640},
        "rep": {"steps": 640},
        "ddls": {"steps": 1000, "step_size": DDLS_STEP_SIZE[name]},
        "drs": {"steps": 640},
        "sir": {"steps": 640},
    }


def configure_determinism() -> None:
    """Fixed thread count and deterministic kernels (process-wide: only the training entry point calls this)."""
    torch.set_num_threads(TRAIN_THREADS)
    torch.use_deterministic_algorithms(True)


def _toy(name: str, out: Path, seed: int, version: int, steps: int | None, refine: int | None) -> Path:
    cfg = toy.TOY_DATA[name].config
    cfg = cfg._replace(
        gan_steps=cfg.gan_steps if steps is None else steps,
        refine_steps=cfg.refine_steps if refine is None else refine,
    )
    res = toy.train_toy(name, seed, cfg)
    gen = torch.Generator().manual_seed(seed + RAW_EVAL_SEED_OFFSET)
    with torch.no_grad():
        raw = res.generator(torch.randn(RAW_EVAL_SAMPLES, cfg.latent_dim, generator=gen))
    report = mode_report(raw, toy.TOY_DATA[name].target())
    spec = ModelSpec(
        name=name,
        version=version,
        description=toy.TOY_DATA[name].description,
        latent_shape=(cfg.latent_dim,),
        output_kind="vector",
        output_shape=(2,),
        output_range=None,
        generator_arch="service.zoo.mlp:Generator",
        generator_kwargs={"latent_dim": cfg.latent_dim, "out_dim": 2, "hidden": cfg.hidden, "depth": cfg.depth},
        discriminator_arch="service.zoo.mlp:Discriminator",
        discriminator_kwargs={"in_dim": 2, "hidden": cfg.hidden, "depth": cfg.depth},
        samplers=sampler_defaults(name),
        training={
            "recipe": "service.zoo.toy.train_toy",
            "seed": seed,
            "config": dict(cfg._asdict()),
            "holdout": f"{toy.HOLDOUT_SIZE} fresh samples from torch.Generator seed {seed} + {toy.HOLDOUT_SEED_OFFSET}",
            "raw_quality": {**report._asdict(), "samples": RAW_EVAL_SAMPLES, "seed": seed + RAW_EVAL_SEED_OFFSET},
        },
    )
    return write_version(out, spec, res.generator, res.discriminator, res.holdout)


def _digits_dcgan(out: Path, seed: int, version: int, steps: int | None, refine: int | None) -> Path:
    cfg = digits.DcganConfig()
    cfg = cfg._replace(
        gan_steps=cfg.gan_steps if steps is None else steps,
        refine_steps=cfg.refine_steps if refine is None else refine,
    )
    res = digits.train_dcgan(seed, cfg)
    spec = ModelSpec(
        name="digits-dcgan",
        version=version,
        description="DCGAN on sklearn digits upscaled to 16x16, JS-GAN loss, D refined for the final G",
        latent_shape=(cfg.nz, 1, 1),
        output_kind="image",
        output_shape=(1, 16, 16),
        output_range=(-1.0, 1.0),
        generator_arch="service.zoo.dcgan:Generator16",
        generator_kwargs={"nz": cfg.nz},
        discriminator_arch="service.zoo.dcgan:Discriminator16",
        discriminator_kwargs={},
        samplers=sampler_defaults("digits-dcgan"),
        training={
            "recipe": "service.zoo.digits.train_dcgan",
            "seed": seed,
            "config": dict(cfg._asdict()),
            "holdout": _split_rule(),
        },
    )
    return write_version(out, spec, res.generator, res.discriminator, res.holdout)


def _split_rule() -> dict[str, Any]:
    return {
        "rule": "service.zoo.digits.split_indices: per class, numpy default_rng(seed) permutation, first 30% held out",
        "seed": digits.SPLIT_SEED,
        "fraction": digits.HOLDOUT_FRACTION,
    }


def _digits_classifier(out: Path, seed: int, steps: int | None) -> Path:
    cfg = clf.ClassifierConfig()
    cfg = cfg._replace(steps=cfg.steps if steps is None else steps)
    res = clf.train_classifier(seed, cfg)
    d = out / clf.CLASSIFIER_DIR
    d.mkdir(parents=True, exist_ok=True)
    save_file(state_tensors(res.model), str(d / clf.WEIGHTS_FILE))
    meta = {
        "arch": "service.zoo.classifier:DigitsClassifier",
        "file": clf.WEIGHTS_FILE,
        "sha256": sha256_file(d / clf.WEIGHTS_FILE),
        "feature_dim": clf.FEATURE_DIM,
        "holdout_accuracy": res.holdout_accuracy,
        "seed": seed,
        "config": dict(cfg._asdict()),
        "split": _split_rule(),
    }
    (d / CLASSIFIER_META).write_text(tomli_w.dumps(meta))
    return d


def train(
    name: str, out: Path, seed: int, version: int = DEFAULT_VERSION, steps: int | None = None, refine: int | None = None
) -> Path:
    """Train ``name`` into ``out``; returns the directory written."""
    if name in TOY_NAMES:
        return _toy(name, out, seed, version, steps, refine)
    if name == "digits-dcgan":
        return _digits_dcgan(out, seed, version, steps, refine)
    if name == "digits-classifier":
        return _digits_classifier(out, seed, steps)
    raise ValueError(f"name must be one of {[*NAMES, 'all']}, got {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m service.zoo.train", description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=[*NAMES, "all"])
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help="registry root (default: models)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--version", type=int, default=DEFAULT_VERSION)
    p.add_argument("--steps", type=int, default=None, help="override the GAN (or classifier) step count")
    p.add_argument("--refine-steps", type=int, default=None, help="override the D-refinement step count")
    args = p.parse_args(argv)
    for flag, value in (("--steps", args.steps), ("--refine-steps", args.refine_steps), ("--seed", args.seed)):
        if value is not None and value < 0:
            p.error(f"{flag} must be >= 0, got {value}")
    configure_determinism()
    for name in NAMES if args.name == "all" else (args.name,):
        t0 = time.perf_counter()
        path = train(name, args.out, args.seed, args.version, args.steps, args.refine_steps)
        print(f"{name}: wrote {path} in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
