"""File access for one model version: paths confined to the version directory, sha256 verification."""

from __future__ import annotations

import hashlib
from pathlib import Path

from service.registry.errors import IntegrityError, ManifestError, UnsafeFileError

HASH_CHUNK_BYTES = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_inside(version_dir: Path, rel: str, manifest_path: Path, field: str) -> Path:
    """``version_dir / rel``, refusing absolute paths, ``..`` and symlinks that leave ``version_dir``."""
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise UnsafeFileError(manifest_path, field, f"path {rel!r} leaves the version directory")
    root = version_dir.resolve()
    target = (version_dir / p).resolve()
    if not target.is_relative_to(root):
        raise UnsafeFileError(manifest_path, field, f"path {rel!r} resolves to {target}, outside {root}")
    if not target.is_file():
        raise ManifestError(manifest_path, field, f"file {rel!r} not found in {version_dir}")
    return target


def verified_file(
    version_dir: Path, rel: str, sha256: str | None, manifest_path: Path, field: str, sha_field: str
) -> Path:
    """Resolve ``rel`` inside ``version_dir`` and check its sha256 (skipped only when ``sha256`` is None)."""
    path = resolve_inside(version_dir, rel, manifest_path, field)
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise IntegrityError(manifest_path, sha_field, f"sha256 of {rel!r} is {actual}, manifest says {sha256}")
    return path
