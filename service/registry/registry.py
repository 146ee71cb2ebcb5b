"""The model registry: ``<root>/<name>/<version>/model.toml`` scanned, loaded, unloaded and resolved by reference.

A broken version never stops the others: its error (naming the file and field) is kept on its entry and
:meth:`Registry.load_all` goes on. ``"name"`` resolves to the highest *ready* version, ``"name@3"`` to that version.
Thread-safe: the lock guards the table only; loading itself runs outside it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, NamedTuple

from service.config import DEFAULT_MAX_JOB_STEPS, DEFAULT_MAX_STEPS
from service.registry.errors import ModelNotFoundError, ModelNotReadyError, RegistryError
from service.registry.model import LoadedModel, load_version
from service.registry.schema import MANIFEST_NAME, NAME_PATTERN

State = Literal["unloaded", "loading", "ready", "failed"]
log = logging.getLogger(__name__)
_REF = re.compile(r"^(?P<name>[^@]+?)(?:@(?P<version>\d+))?$")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"name"`` -> (name, None); ``"name@3"`` -> (name, 3). Malformed refs raise :class:`ModelNotFoundError`."""
    m = _REF.match(ref)
    if m is None or not re.match(NAME_PATTERN, m["name"]):
        raise ModelNotFoundError(ref, "not a model reference: expected 'name' or 'name@version'")
    return m["name"], None if m["version"] is None else int(m["version"])


@dataclass(frozen=True)
class ModelEntry:
    """One version found on disk. ``error`` is the load failure (file and field named) when state is failed."""

    name: str
    version: int
    path: Path
    state: State = "unloaded"
    error: str | None = None
    memory_bytes: int = 0

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


class Ignored(NamedTuple):
    """An entry of the registry root that :meth:`Registry.scan` skipped, and why (with how to fix it)."""

    path: Path
    reason: str


def _version_hint(name: str) -> str:
    digits = re.fullmatch(r"(?:v|version)?[-_]?0*(\d+)", name, flags=re.IGNORECASE)
    fix = f"rename it to '{int(digits[1])}'" if digits else "rename it to its version number"
    return f"version directories must be integers: found {name!r}; {fix}"


MODEL_FILE_SUFFIXES = (".toml", ".pt2", ".pth", ".pt", ".safetensors", ".onnx")
"""Files that belong in a version directory: found anywhere else under the root, they are reported."""


def _misplaced(path: Path) -> Ignored | None:
    """A model file (manifest, weights) outside a version directory; other files (a README) pass silently."""
    if path.suffix not in MODEL_FILE_SUFFIXES:
        return None
    return Ignored(path, "a model file outside a version directory: it belongs in <root>/<name>/<version>/")


def scan_root(root: Path) -> tuple[dict[tuple[str, int], Path], list[Ignored]]:
    """Every ``<name>/<version>/model.toml`` under ``root``, and what was skipped with why.

    Names starting with ``_`` or ``.`` are skipped without a word (a ``_code`` directory for route-B classes,
    ``.git``), and so are files other than model files (a README); anything else that is not a model is listed:
    model files outside a version directory, invalid names, non-integer version directories (``v4``), version
    directories without a model.toml or outside the root.
    """
    found: dict[tuple[str, int], Path] = {}
    ignored: list[Ignored] = []
    if not root.is_dir():
        return found, ignored
    real_root = root.resolve()
    for model_dir in sorted(root.iterdir()):
        if model_dir.name.startswith(("_", ".")):
            continue
        if not model_dir.is_dir():
            ignored.extend(i for i in [_misplaced(model_dir)] if i is not None)
            continue
        if not re.match(NAME_PATTERN, model_dir.name):
            ignored.append(Ignored(model_dir, f"not a model name (expected {NAME_PATTERN})"))
            continue
        versions = 0
        for vdir in sorted(p for p in model_dir.iterdir() if not p.name.startswith(("_", "."))):
            if not vdir.is_dir():
                ignored.extend(i for i in [_misplaced(vdir)] if i is not None)
            elif not vdir.name.isdigit():
                ignored.append(Ignored(vdir, _version_hint(vdir.name)))
            elif not (vdir / MANIFEST_NAME).is_file():
                ignored.append(Ignored(vdir, f"no {MANIFEST_NAME}"))
            elif not vdir.resolve().is_relative_to(real_root):
                ignored.append(Ignored(vdir, f"resolves outside the registry root {real_root}"))
            else:
                found[(model_dir.name, int(vdir.name))] = vdir
                versions += 1
        if not versions and not any(i.path.parent == model_dir for i in ignored):
            ignored.append(Ignored(model_dir, "no version directories (expected <name>/<version>/model.toml)"))
    return found, ignored


class Registry:
    """Model versions under ``root`` on one ``device``. Nothing is read until :meth:`scan`.

    ``max_steps`` / ``max_job_steps``: the server's step limits, passed to :func:`load_version` for its notes.
    """

    def __init__(
        self,
        root: Path | str,
        device: str = "cpu",
        max_steps: int = DEFAULT_MAX_STEPS,
        max_job_steps: int = DEFAULT_MAX_JOB_STEPS,
    ) -> None:
        self.root = Path(root)
        self.device = device
        self.max_steps = max_steps
        self.max_job_steps = max_job_steps
        self._ignored: list[Ignored] = []
        self._reported: set[Path] = set()
        self._lock = threading.RLock()
        self._entries: dict[tuple[str, int], ModelEntry] = {}
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self._key_locks: dict[tuple[str, int], threading.Lock] = {}

    # ------------------------------------------------------------------ discovery
    def scan(self, log_ignored: bool = True) -> list[ModelEntry]:
        """Find every ``<name>/<version>/model.toml``; keeps the state of known versions. Returns :meth:`entries`.

        What it skipped is in :meth:`ignored`, and logged as a warning the first time it is seen (``log_ignored``).
        """
        found, ignored = scan_root(self.root)
        with self._lock:
            self._ignored = ignored
            new = [i for i in ignored if i.path not in self._reported] if log_ignored else []
            self._reported.update(i.path for i in new)
        for item in new:
            log.warning("registry: ignored %s: %s", item.path, item.reason)
        with self._lock:
            for key in list(self._entries):
                if key not in found and key not in self._loaded:
                    del self._entries[key]
            for key, vdir in found.items():
                if key not in self._entries:
                    self._entries[key] = ModelEntry(key[0], key[1], vdir)
        return self.entries()

    def ignored(self) -> list[Ignored]:
        """What the last :meth:`scan` skipped under the root, and why."""
        with self._lock:
            return list(self._ignored)

    def entries(self) -> list[ModelEntry]:
        """Every known version, sorted by (name, version)."""
        with self._lock:
            return [self._entries[k] for k in sorted(self._entries)]

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return [self._loaded[k] for k in sorted(self._loaded)]

    def _entry(self, name: str, version: int) -> ModelEntry:
        with self._lock:
            entry = self._entries.get((name, version))
        if entry is None:
            self.scan()
            with self._lock:
                entry = self._entries.get((name, version))
        if entry is None:
            raise ModelNotFoundError(f"{name}@{version}", f"no version {version} of model {name!r} under {self.root}")
        return entry

    def _set(self, entry: ModelEntry, **changes: object) -> ModelEntry:
        new = replace(entry, **changes)  # type: ignore[arg-type]
        self._entries[(entry.name, entry.version)] = new
        return new

    # ------------------------------------------------------------------ lifecycle
    def load(self, name: str, version: int) -> LoadedModel:
        """Load (or return the already loaded) version. On failure the entry records the error, which is raised.

        Concurrent loads of one version load it once (a per-version lock); other versions load in parallel.
        """
        entry = self._entry(name, version)
        with self._lock:
            key_lock = self._key_locks.setdefault((name, version), threading.Lock())
        with key_lock:
            with self._lock:
                if (name, version) in self._loaded:
                    return self._loaded[(name, version)]
                entry = self._set(self._entries.get((name, version), entry), state="loading", error=None)
            try:
                model = self._read(entry)
            except RegistryError as exc:
                with self._lock:
                    self._set(entry, state="failed", error=str(exc))
                raise
            with self._lock:
                self._loaded[(name, version)] = model
                self._set(entry, state="ready", error=None, memory_bytes=model.memory_bytes)
            return model

    def _read(self, entry: ModelEntry) -> LoadedModel:
        """Load a version's files into a new copy (the table untouched); any failure as :class:`RegistryError`."""
        try:
            return load_version(entry.path, self.device, max_steps=self.max_steps, max_job_steps=self.max_job_steps)
        except RegistryError:
            raise
        except Exception as exc:  # a user's network can fail in any way; report it, never crash the registry
            raise RegistryError(f"{entry.path / MANIFEST_NAME}: {type(exc).__name__}: {exc}") from exc

    def read(self, name: str, version: int) -> LoadedModel:
        """A new copy of a version from its files, not served (see :meth:`install`); the entry is not changed."""
        return self._read(self._entry(name, version))

    def install(self, model: LoadedModel) -> bool:
        """Serve ``model`` in place of the loaded copy of its version, in one step. False, and nothing changed, when
        that version is not loaded (any more): an unload while the new copy was read wins."""
        key = (model.manifest.name, model.manifest.version)  # equal to its directories (checked at load)
        with self._lock:
            if key not in self._loaded:
                return False
            self._loaded[key] = model
            self._set(self._entries[key], state="ready", error=None, memory_bytes=model.memory_bytes)
            return True

    def load_all(self, names: Iterable[str] | None = None) -> list[ModelEntry]:
        """Scan, then load every version (of ``names`` when given); failures are recorded, never raised."""
        wanted = None if names is None else set(names)
        for entry in self.scan():
            if (wanted is None or entry.name in wanted) and entry.state != "ready":
                with contextlib.suppress(RegistryError):  # recorded on the entry
                    self.load(entry.name, entry.version)
        return self.entries()

    def unload(self, name: str, version: int) -> ModelEntry:
        """Drop a version from memory (its entry stays, state ``unloaded``)."""
        entry = self._entry(name, version)
        with self._lock:
            self._loaded.pop((name, version), None)
            return self._set(entry, state="unloaded", error=None, memory_bytes=0)

    def reload(self, name: str, version: int) -> LoadedModel:
        """Re-read the manifest and files of a version with no gap in service: a loaded version keeps serving its
        current copy until the new one has loaded, then the two swap. If the new one fails, the current copy keeps
        serving and the error is raised. A version that is not loaded is simply loaded."""
        with self._lock:
            loaded = (name, version) in self._loaded
        if loaded:
            fresh = self.read(name, version)
            if self.install(fresh):
                return fresh
        return self.load(name, version)

    # ------------------------------------------------------------------ resolution
    def get(self, ref: str) -> LoadedModel:
        """The loaded model for ``"name"`` (highest ready version) or ``"name@version"``.

        Raises :class:`ModelNotFoundError` for an unknown name/version, :class:`ModelNotReadyError` when it exists
        but is not ready (its state and error say why).
        """
        name, version = parse_ref(ref)
        with self._lock:
            versions = sorted((v for (n, v) in self._entries if n == name), reverse=True)
            if not versions:
                raise ModelNotFoundError(ref)
            if version is not None:
                if version not in versions:
                    raise ModelNotFoundError(ref, f"model {name!r} has no version {version} (has {sorted(versions)})")
                model = self._loaded.get((name, version))
                if model is None:
                    e = self._entries[(name, version)]
                    raise ModelNotReadyError(ref, e.state, e.error)
                return model
            for v in versions:
                if (name, v) in self._loaded:
                    return self._loaded[(name, v)]
            latest = self._entries[(name, versions[0])]
            raise ModelNotReadyError(
                ref, f"not ready (latest version {latest.version} is {latest.state})", latest.error, latest.state
            )

    def memory_bytes(self) -> int:
        """Bytes held by every loaded model on this registry's device."""
        with self._lock:
            return sum(m.memory_bytes for m in self._loaded.values())
