"""Write ``deploy/constraints.txt``: the exact version of every package the server image installs, so that two
builds of one commit install the same packages.

The list is the closure of ``pyproject.toml``'s runtime dependencies and its ``gpu`` extra, read from the
environment this runs in (``pip install torch==2.13.0 && pip install -e ".[onnx]"`` first), with the markers of
the image's Python (Linux, CPython :data:`IMAGE_PYTHON`). ``onnxruntime-gpu``, which a CPU machine does not
install, takes the newest version PyPI has released that is not newer than the ``onnxruntime`` installed here (the
GPU build is released apart from, and often after, the CPU one: ``pip index versions onnxruntime-gpu`` lists them;
offline, the pin already in the file is kept). torch's CUDA libraries are pinned by the torch version itself. The
Dockerfile installs with ``pip install -c constraints.txt``.

    python deploy/lock.py            # rewrite the file
    python deploy/lock.py --check    # exit 1 when the file is not what this environment gives
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "deploy" / "constraints.txt"
EXTRA = "gpu"
STAND_INS = {"onnxruntime-gpu": "onnxruntime"}  # pinned after the version of the package that stands in for it here
# The base image of the Dockerfile (CUDA_IMAGE) and the python3 it installs: dependency markers are evaluated for it.
IMAGE_OS = "ubuntu24.04"
IMAGE_PYTHON = "3.12"
TARGET = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux",
          "platform_python_implementation": "CPython", "implementation_name": "cpython",
          "python_version": IMAGE_PYTHON, "python_full_version": f"{IMAGE_PYTHON}.0"}
INDEX_TIMEOUT_S = 120
HEADER = ("# Exact versions for the server image (Dockerfile: pip install -c). Written by deploy/lock.py from the\n"
          "# closure of pyproject.toml's runtime dependencies and its gpu extra; do not edit by hand.\n")


def top_level() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"][EXTRA]]]


def applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**TARGET, "extra": e}) for e in (extras or {""}))


def closure() -> dict[str, str]:
    """name -> installed version for every package the top-level requirements pull in (missing ones skipped:
    platform packages of another build, e.g. torch's CUDA libraries)."""
    pins: dict[str, str] = {}
    todo: list[tuple[Requirement, set[str]]] = [(r, set(r.extras)) for r in top_level()]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        installed = STAND_INS.get(name, name)
        try:
            dist = metadata.distribution(installed)
        except metadata.PackageNotFoundError:
            continue
        pins[name] = dist.version
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({**TARGET, "extra": e}) for e in extras | {""}):
                todo.append((sub, set(sub.extras)))
    return pins


def newest_not_after(name: str, ceiling: str, released: list[str]) -> str:
    """The newest final release of ``released`` that is not newer than ``ceiling`` (the stand-in's version)."""
    top = Version(ceiling)
    candidates = []
    for v in released:
        try:
            version = Version(v)
        except InvalidVersion:
            continue
        if not version.is_prerelease and not version.is_devrelease and version <= top:
            candidates.append(version)
    if not candidates:
        raise SystemExit(f"{name}: no released version <= {ceiling} (the installed {STAND_INS[name]}) among "
                         f"{released}: install an older {STAND_INS[name]} or pin {name} by hand")
    return str(max(candidates))


def released_versions(name: str) -> list[str] | None:
    """The versions the package index has for ``name`` (``pip index versions``), None when it cannot be asked."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name], capture_output=True,
                              text=True, timeout=INDEX_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^Available versions: (.+)$", proc.stdout, re.M)
    return [v.strip() for v in m.group(1).split(",")] if proc.returncode == 0 and m else None


def current_pins() -> dict[str, str]:
    if not OUTPUT.exists():
        return {}
    lines = [ln for ln in OUTPUT.read_text().splitlines() if "==" in ln and not ln.startswith("#")]
    return dict(ln.split("==", 1) for ln in lines)


def render() -> str:
    pins = {name: re.sub(r"[+].*$", "", version) for name, version in closure().items()}
    for name in STAND_INS.keys() & pins.keys():
        released = released_versions(name)
        if released is not None:
            pins[name] = newest_not_after(name, pins[name], released)
        elif name in current_pins():
            print(f"cannot list {name}'s releases: keeping {name}=={current_pins()[name]}", file=sys.stderr)
            pins[name] = current_pins()[name]
        else:
            raise SystemExit(f"cannot list {name}'s releases (pip index versions {name}) and the file pins none")
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def main(argv: list[str]) -> int:
    text = render()
    if argv[1:] == ["--check"]:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is not what this environment gives: run python deploy/lock.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT} ({text.count('==')} packages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
