"""The registry's error hierarchy. Every message names the file, and where there is one, the manifest field.

RegistryError                      base of everything below
├── ManifestError(path, field, message)   model.toml unreadable, a field invalid, a weight file that does
│                                         not match its declared architecture, a missing file
├── IntegrityError(path, field, ...)      a file's sha256 differs from the manifest's
├── UnsafeFileError(path, field, ...)     a pickled whole module, or a path that leaves the version directory
├── ProviderError                         onnxruntime did not use the execution provider the device needs
├── ModelNotFoundError(ref)               no such model name / version in the registry (or a malformed ref)
└── ModelNotReadyError(ref, state, error) the version exists but is not loaded (unloaded, loading, failed)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class RegistryError(Exception):
    """Base of every registry error."""


class ManifestError(RegistryError):
    """A problem with one model version's manifest or files, located by file and field.

    ``str(err)`` reads ``models/x/1/model.toml: generator.sha256: expected 64 hex chars, got 'abc'``; when pydantic
    found several problems at once, each follows on its own line (``errors`` holds every (field, message)).
    """

    def __init__(self, path: Path | str, field: str, message: str, others: Sequence[tuple[str, str]] = ()) -> None:
        self.path = Path(path)
        self.field = field
        self.message = message
        self.errors: list[tuple[str, str]] = [(field, message), *others]
        lines = [f"{self.path}: {f}: {m}" for f, m in self.errors]
        super().__init__("\n".join(lines))


class IntegrityError(ManifestError):
    """A file's sha256 does not match the manifest (``field`` is e.g. ``generator.sha256``)."""


class UnsafeFileError(ManifestError):
    """A file the registry refuses to open: a pickled whole module, or a path outside the version directory."""


class ProviderError(RegistryError):
    """onnxruntime runs on an execution provider other than the one the device asked for."""


class ModelNotFoundError(RegistryError, KeyError):
    """No model (or version) of that name; also raised for a malformed ``name@version`` reference."""

    def __init__(self, ref: str, reason: str = "no such model in the registry") -> None:
        self.ref = ref
        self.reason = reason
        super().__init__(f"{ref!r}: {reason}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return f"{self.ref!r}: {self.reason}"


class ModelNotReadyError(RegistryError):
    """The model exists but no requested version is ready; ``state`` and ``error`` say why."""

    def __init__(self, ref: str, state: str, error: str | None = None, entry_state: str | None = None) -> None:
        self.ref = ref
        self.state = state
        self.error = error
        self.entry_state = entry_state or state  # the version's own state: loading | failed | unloaded
        detail = f": {error}" if error else ""
        super().__init__(f"model {ref!r} is {state}{detail}")
