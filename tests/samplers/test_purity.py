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
