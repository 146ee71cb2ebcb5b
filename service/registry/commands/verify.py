"""``gansampler-server verify``: check every manifest, file hash and (by default) load every model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "check every model.toml and file sha256 under the registry root; exit 1 on any failure"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, default=Path("models"), help="registry root (default: models)")
    p.add_argument("--hashes-only", action="store_true", help="check manifests and hashes without building networks")
    p.add_argument("--device", default="cpu", help="torch device for loading (default: cpu)")


def check_files(vdir: Path) -> str:
    """Manifest + path confinement + sha256 of every file, without loading networks; returns a detail line."""
    from service.registry.files import verified_file
    from service.registry.schema import MANIFEST_NAME, read_manifest

    path = vdir / MANIFEST_NAME
    m = read_manifest(path, vdir.parent.name, int(vdir.name))
    verified_file(vdir, m.generator.file, m.generator.sha256, path, "generator.file", "generator.sha256")
    verified_file(
        vdir, m.discriminator.file, m.discriminator.sha256, path, "discriminator.file", "discriminator.sha256"
    )
    if m.data.holdout is not None:
        verified_file(vdir, m.data.holdout, m.data.holdout_sha256, path, "data.holdout", "data.holdout_sha256")
    return f"{m.generator.format}/{m.discriminator.format}, hashes ok"


def run(args: argparse.Namespace) -> int:
    from service.registry.errors import RegistryError
    from service.registry.model import load_version
    from service.registry.registry import Registry

    if not args.root.is_dir():
        print(f"verify: registry root {args.root} is not a directory", file=sys.stderr)
        return 1
    rows: list[tuple[str, str, str]] = []
    registry = Registry(args.root)
    for entry in registry.scan(log_ignored=False):  # listed below the table instead
        try:
            if args.hashes_only:
                detail = check_files(entry.path)
            else:
                model = load_version(entry.path, args.device)
                cal = model.calibration.method if model.calibrated else "uncalibrated"
                detail = (
                    f"{model.backends['generator']}/{model.backends['discriminator']}, {cal}, {model.memory_bytes} B"
                )
                detail += "".join(f"; {note}" for note in model.notes)  # e.g. how a probability D became logits
            rows.append((entry.id, "ok", detail))
        except RegistryError as exc:
            rows.append((entry.id, "FAILED", str(exc).replace("\n", "; ")))
        except Exception as exc:  # a user's network may fail in any way
            rows.append((entry.id, "FAILED", f"{entry.path}: {type(exc).__name__}: {exc}"))
    ignored = [f"ignored {item.path}: {item.reason}" for item in registry.ignored()]
    if not rows:
        print(f"verify: no model versions under {args.root}", *ignored, sep="\n")
        return 0
    width = max(len(r[0]) for r in rows)
    print(f"{'MODEL':<{width}}  {'STATUS':<6}  DETAIL")
    for ref, status, detail in rows:
        print(f"{ref:<{width}}  {status:<6}  {detail}")
    failed = sum(r[1] != "ok" for r in rows)
    print(f"{len(rows) - failed} ok, {failed} failed" + (f", {len(ignored)} ignored" if ignored else ""))
    print(*ignored, sep="\n", end="\n" if ignored else "")
    return 1 if failed else 0
