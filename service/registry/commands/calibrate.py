"""``gansampler-server calibrate MODEL``: fit the discriminator's calibration on held-out data and store it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "fit a calibration (platt | isotonic | identity) on a model's holdout and write it into its model.toml"


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
    return 0
