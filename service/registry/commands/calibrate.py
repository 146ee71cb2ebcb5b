"""``gansampler-server calibrate MODEL``: fit the discriminator's calibration on held-out data and store it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "fit a calibration (platt | isotonic | identity) on a model's holdout and write it into its model.toml"

AUC_HIGH = 0.99  # D separates held-out real from fake almost perfectly
AUC_LOW = 0.55  # D barely tells them apart
DAWID_Z_MAX = 2.0  # |Z| above this: the calibrated probabilities are off
ECE_HIGH = 0.1  # mean |predicted - observed| above this over the probability bins: worth a look


def advice(calibration: Any, report: Any) -> list[str]:
    """Warnings on a fitted calibration (``Calibration``) and its held-out ``CalibrationReport``, one line each."""
    notes: list[str] = []
    if calibration.method == "platt" and calibration.a <= 0:
        notes.append(
            f"warning: platt slope a = {calibration.a:.4g} <= 0: D scores held-out REAL samples below G's samples. "
            "Usually D runs in another mode than it was trained in (BatchNorm running statistics of a D trained on "
            "separate real and fake batches), or the holdout is not preprocessed like D's training data. The "
            "calibrated D is flipped; check D before trusting samples (docs/bring-your-own-model.md)."
        )
    if report.auc >= AUC_HIGH:
        notes.append(
            f"note: AUC {report.auc:.3f} >= {AUC_HIGH}: D tells real from fake almost perfectly, so every fake gets "
            "a probability near 0 and samplers reweight G's samples by D's smallest, least reliable differences; "
            "check acceptance and distinct_states (diagnostics=chains). An earlier D checkpoint is often a better guide."
        )
    elif report.auc <= AUC_LOW:
        notes.append(
            f"note: AUC {report.auc:.3f} <= {AUC_LOW}: D barely tells real from fake; samplers will change little "
            "compared with raw G (fine for a very good G; otherwise D is too weak to guide them)."
        )
    if report.ece > ECE_HIGH and abs(report.dawid_z) <= DAWID_Z_MAX:  # a large |Z| has its own note below
        notes.append(
            f"note: ECE {report.ece:.3f} > {ECE_HIGH} with |Dawid Z| <= {DAWID_Z_MAX}: the calibrated probabilities "
            f"look off by that much on average over {report.n} held-out samples, mostly the noise of few samples per "
            "bin; a larger holdout (and --fakes) gives a steadier figure."
        )
    if abs(report.dawid_z) > DAWID_Z_MAX:
        notes.append(
            f"note: |Dawid Z| = {abs(report.dawid_z):.2f} > {DAWID_Z_MAX}: probabilities are off on held-out data; "
            "try --method isotonic, or a larger holdout."
        )
    return notes


def add_arguments(p: argparse.ArgumentParser) -> None:
    from service.registry.calibrate import DEFAULT_PILOT, DEFAULT_SEED

    p.add_argument("model", metavar="MODEL", help="'name' (highest version) or 'name@version'")
    p.add_argument("--root", type=Path, default=Path("models"), help="registry root (default: models)")
    p.add_argument("--method", choices=("platt", "isotonic", "identity"), default="platt", help="default: platt")
    p.add_argument("--fakes", type=int, default=None, help="fresh fakes to score (default: as many as holdout samples)")
    p.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed of the fakes and of the split (default: {DEFAULT_SEED})"
    )
    p.add_argument(
        "--pilot", type=int, default=DEFAULT_PILOT, help=f"fakes for DRS logit_max (default: {DEFAULT_PILOT})"
    )
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--dry-run", action="store_true", help="print the result, do not write model.toml")


def run(args: argparse.Namespace) -> int:
    from service.registry.calibrate import calibrate_version, resolve_version_dir
    from service.registry.errors import RegistryError

    try:
        vdir = resolve_version_dir(args.root, args.model)
        res = calibrate_version(
            vdir, args.method, args.fakes, args.seed, args.pilot, args.device, write=not args.dry_run
        )
    except (RegistryError, ValueError) as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 1
    r = res.report
    print(f"{res.model_id}: {res.calibration.method} on {res.n_real} real + {res.n_fake} fake (fit/eval halves)")
    print(f"  held-out  AUC {r.auc:.4f}  Dawid Z {r.dawid_z:+.3f}  ECE {r.ece:.4f}  Brier {r.brier:.4f}  (n={r.n})")
    if res.calibration.method == "platt":
        print(f"  map       d~ = {res.calibration.a:.6g} * d + {res.calibration.b:.6g}")
    print(f"  drs       logit_max = {res.logit_max:.6g} over {args.pilot} pilot fakes")
    print(f"  {'would write' if args.dry_run else 'wrote'} {res.manifest_path}")
    if res.write_note is not None:
        print(f"  note: {res.write_note}")
    for line in advice(res.calibration, r):
        print(f"  {line}")
    return 0
