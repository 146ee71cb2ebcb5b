"""The README's examples, run as written against ``gansampler-server serve`` on the shipped demo models: the curl
request (through httpx, same body) and its documented answer, the Python SDK block and the CLI block."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # tests/e2e has no __init__.py
    sys.path.insert(0, str(ROOT))

from tests.e2e.live_server import serve_process  # noqa: E402

pytestmark = pytest.mark.slow

README = (ROOT / "README.md").read_text()
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 300.0


def blocks(language: str, section: str) -> list[str]:
    """The ``language`` code blocks of the README section titled ``section``."""
    part = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", part, re.S)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("readme")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with serve_process(ROOT / "models", tmp / "data", env, ROOT, START_TIMEOUT_S, STOP_TIMEOUT_S) as (url, proc):
        yield url
    assert proc.returncode == 0


def test_the_curl_example_answers_as_documented(server: str) -> None:
    (curl,) = blocks("bash", "Sampling")
    body = re.search(r"-d '(.*?)'", curl, re.S)
    assert body is not None and "/v1/samples/rep" in curl
    r = httpx.post(f"{server}/v1/samples/rep", content=body.group(1), headers={"content-type": "application/json"},
                   timeout=RUN_TIMEOUT_S)
    assert r.status_code == 200, r.text
    got = r.json()
    (documented,) = blocks("json", "Sampling")
    for key in ("model", "sampler", "seed", "n", "steps", "output", "shape"):
        value = re.search(rf'"{key}": ("[^"]*"|\[[^\]]*\]|-?[\d.]+)', documented)
        assert value is not None, key
        assert str(got[key]).replace("'", '"').replace(" ", "") == value.group(1).strip('"').replace(" ", ""), key
    d = got["diagnostics"]
    assert (d["accepted"], d["proposals"]) == (164, 400)  # the README's numbers, seeded
    assert round(d["logit_initial_mean"], 2) == -6.21 and round(d["logit_final_mean"], 2) == -1.64
    assert d["exact"] is True and d["calibrated"] is True and len(got["samples"]) == 4


def test_the_python_sdk_block_runs(server: str, tmp_path: Path) -> None:
    (code,) = blocks("python", "Python SDK and CLI")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")])}
    code = code.replace('"http://127.0.0.1:8000"', repr(server))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=RUN_TIMEOUT_S)
    assert run.returncode == 0, run.stderr
    assert len(list((tmp_path / "out").glob("sample_*.png"))) == 16 and (tmp_path / "out" / "grid.png").exists()
    assert len(list((tmp_path / "big").glob("sample_*.png"))) == 128
    assert 0 < float(run.stdout.split()[0]) < 1  # the acceptance rate it prints


def test_the_cli_block_runs(server: str, tmp_path: Path) -> None:
    (code,) = blocks("bash", "Python SDK and CLI")
    exe = shutil.which("gansampler")
    if exe is None:
        pytest.skip("the gansampler console script is not installed")
    env = {**os.environ, "GANSAMPLER_URL": server}
    for line in code.strip().splitlines():
        argv = line.split()
        assert argv[0] == "gansampler"
        run = subprocess.run([exe, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=RUN_TIMEOUT_S)
        assert run.returncode == 0, (line, run.stderr)
    assert len(list((tmp_path / "out").glob("sample_*.png"))) == 64


@pytest.mark.parametrize("index", range(3))
def test_the_sdk_readme_python_blocks_run(server: str, tmp_path: Path, index: int) -> None:
    text = (ROOT / "clients" / "python" / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(code) == 3, "a block was added to clients/python/README.md: run it here too"
    env = {**os.environ, "GANSAMPLER_URL": server,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")])}
    source = code[index] if index < 2 else "from gansampler import Client\nclient = Client()\n" + code[index]
    run = subprocess.run([sys.executable, "-c", source], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=RUN_TIMEOUT_S)
    assert run.returncode == 0, run.stderr
    if index == 2:  # it continues the first block's session; prints the 422's param and message
        assert run.stdout.startswith("n n must be <= 1024, got 100000")
