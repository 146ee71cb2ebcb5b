"""The sampler core is pure: importing it pulls in no web, metrics, HTTP or ONNX runtime module."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("fastapi", "prometheus_client", "httpx", "onnxruntime", "starlette", "uvicorn", "pydantic")

CODE = f"""
import importlib, json, pkgutil, sys
import service.samplers as s
for m in pkgutil.iter_modules(s.__path__):
    importlib.import_module("service.samplers." + m.name)
print(json.dumps(sorted(k for k in sys.modules if k.split(".")[0] in {FORBIDDEN!r})))
"""


def test_samplers_import_no_service_dependencies() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_sampler_modules_import_only_torch_and_the_standard_library() -> None:
    import ast
    from pathlib import Path

    import service.samplers

    # numpy is the array library under torch's CPU tensors (Tensor.numpy() shares their memory): block.py loops over
    # steps in it on a CPU, where a numpy call costs a fraction of a torch op
    allowed = set(sys.stdlib_module_names) | {"torch", "numpy", "service", "__future__"}
    for path in Path(service.samplers.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                assert not name.startswith("service.") or name.startswith("service.samplers"), f"{path.name}: {name}"
