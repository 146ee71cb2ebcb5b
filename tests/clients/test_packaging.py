"""The SDK stays light: no torch (or server code) in its dependency closure, its imports, or its source."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import gansampler
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PACKAGE_DIR = Path(gansampler.__file__).parent
CLIENT_ROOT = PACKAGE_DIR.parent
FORBIDDEN = {"torch", "torchvision", "triton", "gansampler-service"}
EXTRAS = ("numpy", "images", "all")


def closure(dist: str, extras: tuple[str, ...] = ()) -> set[str]:
    """Names of every installed distribution required by ``dist`` (with ``extras``), transitively."""
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(dist, extras)]
    while todo:
        name, wanted = todo.pop()
        key = canonicalize_name(name)
        if key in seen and not wanted:
            continue
        seen.add(key)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            environments = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in environments):
                todo.append((req.name, tuple(sorted(req.extras))))
    return seen


def test_declared_requirements() -> None:
    requires = [Requirement(r) for r in metadata.requires("gansampler") or []]
    core = {canonicalize_name(r.name) for r in requires if r.marker is None}
    assert core == {"httpx", "pydantic"}
    for extra in EXTRAS:
        assert extra in (metadata.metadata("gansampler").get_all("Provides-Extra") or [])
    assert "gansampler" in {ep.name for ep in metadata.entry_points(group="console_scripts")}


@pytest.mark.parametrize("extras", [(), *((e,) for e in EXTRAS)])
def test_installed_dependency_closure_has_no_torch(extras: tuple[str, ...]) -> None:
    names = closure("gansampler", extras)
    assert {"httpx", "pydantic"} <= names
    assert not names & FORBIDDEN, f"forbidden distributions in the closure: {names & FORBIDDEN}"


def test_closure_walker_can_see_torch() -> None:
    """Guard against a walker that finds nothing: the server's own closure does contain torch."""
    try:
        names = closure("gansampler-service")
    except metadata.PackageNotFoundError:
        pytest.skip("gansampler-service is not installed")
    assert "torch" in names


def test_import_pulls_neither_torch_nor_server_code() -> None:
    code = (
        "import sys, gansampler, gansampler.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'service', 'numpy', 'PIL'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # numpy and Pillow load lazily, only when samples are decoded


def test_source_never_imports_torch_or_service() -> None:
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"torch", "service"}, f"{path} imports {name}"


def test_py_typed_is_shipped() -> None:
    assert (PACKAGE_DIR / "py.typed").exists()


@pytest.mark.slow
def test_fresh_resolution_from_the_index_has_no_torch(tmp_path: Path) -> None:
    """Resolve ``gansampler[images]`` as a fresh environment would (``--ignore-installed``), without installing."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            f"{CLIENT_ROOT}[images]",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        if any(
            s in result.stderr for s in ("NewConnectionError", "Could not find a version", "No matching distribution")
        ):
            pytest.skip(f"package index unreachable: {result.stderr[-300:]}")
        raise AssertionError(result.stderr)
    installed = {canonicalize_name(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}
    assert {"gansampler", "httpx", "pydantic", "numpy", "pillow"} <= installed
    assert not installed & FORBIDDEN, installed
