"""Write ``deploy/constraints.txt``: the exact version of every package the server image installs, so that two
builds of one commit install the same packages.

The list is the closure of ``pyproject.toml``'s runtime dependencies and its ``gpu`` extra, read from the
environment this runs in (``pip install torch==2.13.0 && pip install -e ".[onnx]"`` first), for Linux and CPython.
``onnxruntime-gpu``, which a CPU machine does not install, takes the version of ``onnxruntime``; torch's CUDA
libraries are pinned by the torch version itself. The Dockerfile installs with ``pip install -c constraints.txt``.

    python deploy/lock.py            # rewrite the file
    python deploy/lock.py --check    # exit 1 when the file is not what this environment gives
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "deploy" / "constraints.txt"
EXTRA = "gpu"
STAND_INS = {"onnxruntime-gpu": "onnxruntime"}  # pinned to the version of the package that stands in for it here
TARGET = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux",
          "platform_python_implementation": "CPython", "implementation_name": "cpython"}
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


def render() -> str:
    pins = closure()
    return HEADER + "".join(f"{name}=={re.sub(r'[+].*$', '', version)}\n" for name, version in sorted(pins.items()))


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
