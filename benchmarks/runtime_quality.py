"""What ``[runtime] precision = "bfloat16"`` (and ``forward = "onnxruntime"``) change in the samples: acceptance
rates, sample quality and the logits, against the float32 torch load, on the demo models (a script, not a test).

For each model, each setting is loaded through the Registry exactly as the server loads it (a copy of the version
directory with that ``[runtime]`` table: ``benchmarks/speed_runtime.load_setting``), then every sampler of
``--samplers`` runs ``n`` chains with the model's manifest defaults from the same request seeds (``--seeds``), via
``benchmarks/quality.measure`` (same metrics as ``quality_results.md``: HQ fraction / modes covered / mode KL on the
2-D mixture, Fréchet distance / precision / recall / classes / class KL in the digits classifier's features).
Several seeds show the seed-to-seed spread a setting's change must be compared with.

The logit table: |Δ calibrated logit| of each setting against float32 at ``LOGIT_SAMPLES`` fixed G samples (quantiles,
mean signed shift) and on the held-out real samples.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/runtime_quality.py --out quality_levers.md   # ~8 min on 2 cores
    python benchmarks/runtime_quality.py --models gaussians25 --samplers mh --seeds 0 --n 200  # smoke test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import DEFAULT_MODELS_DIR, info_block, machine_info, markdown_table, write_report
from benchmarks.quality import (
    BENCH_THREADS,
    CLASSIFIER_ROOT,
    DIGITS_BUDGET,
    TOY_BUDGET,
    TOY_MODELS,
    digits_quality,
    load_classifier,
    measure,
    toy_quality,
)
from benchmarks.quality import fmt as qfmt
from benchmarks.speed_runtime import load_setting, source_version
from service.registry import LoadedModel

MODELS = ("gaussians25", "digits-dcgan")
SAMPLERS = ("mh", "drs", "sir", "rep")
SEEDS = (0, 1, 2)
SETTINGS: dict[str, dict[str, Any] | None] = {
    "float32": None,
    "bfloat16": {"precision": "bfloat16"},
    "onnxruntime": {"forward": "onnxruntime"},
}
REFERENCE = "float32"
N = {"gaussians25": TOY_BUDGET.n, "digits-dcgan": DIGITS_BUDGET.n}
STEPS: dict[str, int | None] = {"gaussians25": TOY_BUDGET.steps, "digits-dcgan": DIGITS_BUDGET.steps}
"""Chains n and chain length K per model as in quality.py (K None: the manifest's ``[samplers.*] steps``)."""
LOGIT_SAMPLES = 4096
LOGIT_SEED = 11
QUANTILES = (0.5, 0.9, 0.99)
TOY_KEYS = ["hq", "modes", "kl"]
DIGITS_KEYS = ["fd", "precision", "recall", "classes", "kl"]


def _logits(model: LoadedModel, z: Tensor) -> Tensor:
    with torch.no_grad():
        return model.pair.logit(model.pair.generator(z)).reshape(-1).double()


def logit_rows(name: str, models: dict[str, LoadedModel]) -> list[list[object]]:
    """|Δ calibrated logit| of each setting against REFERENCE on LOGIT_SAMPLES G samples and the holdout."""
    ref_model = models[REFERENCE]
    z = torch.randn(LOGIT_SAMPLES, *ref_model.pair.latent_shape, generator=torch.Generator().manual_seed(LOGIT_SEED))
    ref = _logits(ref_model, z)
    rows: list[list[object]] = []
    for label, model in models.items():
        if label == REFERENCE:
            continue
        d = _logits(model, z) - ref
        q = torch.quantile(d.abs(), torch.tensor(QUANTILES, dtype=torch.float64)).tolist()
        real = "-"
        if model.pair.real_logit is not None and ref_model.pair.real_logit is not None:
            real = f"{float((model.pair.real_logit - ref_model.pair.real_logit).abs().max()):.2e}"
        rows.append([name, label, f"{float(ref.abs().max()):.2f}", *(f"{v:.2e}" for v in q),
                     f"{float(d.abs().max()):.2e}", f"{float(d.mean()):+.2e}", real])
    return rows


def sampler_rows(name: str, models: dict[str, LoadedModel], samplers: Sequence[str], seeds: Sequence[int], n: int,
                 quality: Callable[[Tensor], dict[str, Any]], keys: Sequence[str]) -> list[list[object]]:
    """One row per (sampler, setting, seed): acceptance, its change against REFERENCE at the same seed, quality."""
    rows: list[list[object]] = []
    for sampler in samplers:
        for seed in seeds:
            ref_accept = None
            for label, model in models.items():
                r = measure(model, sampler, n, seed, STEPS.get(name), quality)
                if label == REFERENCE:
                    ref_accept = r.acceptance
                delta = "-" if label == REFERENCE or ref_accept is None else f"{r.acceptance - ref_accept:+.4f}"
                row = [name, sampler, label, seed, r.n, r.steps, qfmt(r.acceptance), delta,
                       *(qfmt(r.quality.get(k, "")) for k in keys), f"{r.seconds:.1f}"]
                rows.append(row)
                print(" | ".join(str(c) for c in row), file=sys.stderr, flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--n", type=int, default=None, help=f"chains per run (default per model: {N})")
    p.add_argument("--out", type=Path, default=None, help="write the markdown report here (default: stdout)")
    args = p.parse_args(argv)
    torch.set_num_threads(BENCH_THREADS)  # as quality.py; before loading, so onnxruntime gets the same count
    started = time.perf_counter()
    labels = [REFERENCE, *(s for s in args.settings if s != REFERENCE)]
    logit_table: list[list[object]] = []
    sections: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gansampler-runtime-quality-") as tmp:
        for name in args.models:
            src = source_version(name, Path(tmp) / "source", args.models_dir)
            models = {label: load_setting(src, Path(tmp) / name / label, SETTINGS[label], "cpu") for label in labels}
            for label, m in models.items():
                print(f"{name} [{label}]: {'; '.join(m.notes) or 'no notes'}", file=sys.stderr, flush=True)
            if name in TOY_MODELS:
                quality, keys = toy_quality(TOY_MODELS[name]), TOY_KEYS
            else:
                real = models[REFERENCE].pair.real
                assert real is not None, f"{name} has no holdout"
                quality, keys = digits_quality(load_classifier(CLASSIFIER_ROOT), real), DIGITS_KEYS
            logit_table += logit_rows(name, models)
            rows = sampler_rows(name, models, args.samplers, args.seeds, args.n or N.get(name, 500), quality, keys)
            head = ["model", "sampler", "setting", "seed", "n", "K", "accept", f"Δ accept vs {REFERENCE}", *keys, "s"]
            sections.append(f"### {name}\n\n" + markdown_table(head, rows))
    q = ", ".join(f"p{round(v * 100)}" for v in QUANTILES)
    text = "\n\n".join([
        "# What precision / forward change in the samples (runtime_quality.py)",
        "### Machine\n\n" + info_block(machine_info(torch.device("cpu"))),
        f"- command: `python benchmarks/runtime_quality.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f"\n- {BENCH_THREADS} torch thread(s); total {time.perf_counter() - started:.0f} s",
        f"### \\|Δ calibrated logit\\| against {REFERENCE} ({LOGIT_SAMPLES} G samples, seed {LOGIT_SEED}; "
        "mean Δ is signed; real: max over the holdout)\n\n"
        + markdown_table(["model", "setting", "max \\|logit\\| f32", *q.split(", "), "max", "mean Δ", "real max"],
                         logit_table),
        *sections,
    ]) + "\n"
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
