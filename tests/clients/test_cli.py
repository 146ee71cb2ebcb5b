"""The ``gansampler`` CLI over a MockTransport: files written, exit codes, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from gansampler.cli import main
from gansampler.cli._common import EXIT_API_ERROR, EXIT_CONNECTION, EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE

from .conftest import MODEL_INFO, FakeServer, error_response, job_body, sample_body


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GANSAMPLER_URL", raising=False)
    monkeypatch.delenv("GANSAMPLER_API_KEY", raising=False)


def run(server: FakeServer, *argv: str) -> int:
    return main(["--url", "http://test", "--max-retries", "0", *argv], transport=httpx.MockTransport(server))


def test_sample_writes_pngs_grid_and_diagnostics(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add("POST", "/v1/samples/rep", lambda r: httpx.Response(200, json=sample_body(4)))
    out = tmp_path / "out"
    code = run(
        server,
        "sample",
        "toy",
        "--sampler",
        "rep",
        "-n",
        "4",
        "-o",
        str(out),
        "--seed",
        "7",
        "--steps",
        "20",
        "--param",
        "step_size=0.05",
        "--option",
        "proposal=prior",
        "--option",
        "x=true",
    )
    assert code == EXIT_OK
    assert json.loads(server.requests[0].content) == {
        "model": "toy",
        "n": 4,
        "seed": 7,
        "steps": 20,
        "params": {"step_size": 0.05},
        "options": {"proposal": "prior", "x": True},
        "diagnostics": "summary",
    }
    assert sorted(p.name for p in out.iterdir()) == [
        "diagnostics.json",
        "grid.png",
        "sample_0000.png",
        "sample_0001.png",
        "sample_0002.png",
        "sample_0003.png",
    ]
    assert json.loads((out / "diagnostics.json").read_text())["diagnostics"]["acceptance_rate"] == 0.41
    stdout = capsys.readouterr().out
    assert "wrote 4 samples" in stdout and "seed 7" in stdout and "acceptance 0.410" in stdout


def test_sample_vector_model_writes_npy(server: FakeServer, tmp_path: Path) -> None:
    server.add("POST", "/v1/samples/mh", lambda r: httpx.Response(200, json=sample_body(3, output="array", shape=(2,))))
    assert run(server, "sample", "ring", "--sampler", "mh", "-n", "3", "-o", str(tmp_path)) == EXIT_OK
    assert np.load(tmp_path / "samples.npy").shape == (3, 2)
    assert not (tmp_path / "grid.png").exists()


def test_sample_server_error_is_reported(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.add(
        "POST", "/v1/samples/rep", lambda r: error_response(422, "invalid_request", "n must be <= 1024, got 5000", "n")
    )
    assert run(server, "sample", "toy", "-n", "5000") == EXIT_API_ERROR
    err = capsys.readouterr().err
    assert "422 invalid_request: n must be <= 1024, got 5000 (param: n) [request-id: req-422]" in err


def test_connection_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    code = main(["models", "--url", "http://test", "--max-retries", "0"], transport=httpx.MockTransport(refuse))
    assert code == EXIT_CONNECTION
    assert "cannot reach http://test" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["sample"],
        ["sample", "toy", "--param", "step_size"],
        ["sample", "toy", "--param", "step_size=abc"],
        ["sample", "toy", "--sampler", "nope"],
        ["job"],
        ["sample", "toy", "--npz", "--job"],
    ],
)
def test_usage_errors(server: FakeServer, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(server, *argv)
    assert info.value.code == EXIT_USAGE


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    assert "COMMAND" in capsys.readouterr().err


def test_models_table_and_detail(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.add("GET", "/v1/models", lambda r: httpx.Response(200, json={"models": [MODEL_INFO]}))
    server.add("GET", "/v1/models/toy", lambda r: httpx.Response(200, json=MODEL_INFO))
    assert run(server, "models") == EXIT_OK
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["MODEL", "STATE", "KIND", "SHAPE", "SAMPLERS"]
    assert table[1].split() == ["toy@1", "ready", "image", "1x4x4", "rep,ddls"]
    assert run(server, "models", "toy") == EXIT_OK
    detail = capsys.readouterr().out
    assert "--param step_size=<1e-06..1> (default 0.01)" in detail and "sampler drs: unsupported" in detail
    assert "sampler ddls: approximate, default steps 1000" in detail
    assert "--option decay=false|true" in detail and "--option limit=<-1.0..1.0>|null" in detail
    assert run(server, "models", "toy", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["id"] == "toy@1"


def test_global_flags_after_subcommand(server: FakeServer) -> None:
    server.add("GET", "/v1/models", lambda r: httpx.Response(200, json={"models": []}))
    assert main(["models", "--url", "http://elsewhere", "--api-key", "sk"], transport=httpx.MockTransport(server)) == 0
    assert str(server.requests[0].url) == "http://elsewhere/v1/models"
    assert server.requests[0].headers["authorization"] == "Bearer sk"


def test_job_create_wait_and_save(server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.add("POST", "/v1/jobs", lambda r: httpx.Response(202, json=job_body()))
    server.add(
        "GET",
        "/v1/jobs/job_1",
        [httpx.Response(200, json=job_body("running", 0.5)), httpx.Response(200, json=job_body("succeeded", 1.0))],
    )
    server.add("GET", "/v1/jobs/job_1/result", lambda r: httpx.Response(200, json=sample_body(2)))
    code = run(
        server,
        "job",
        "create",
        "toy",
        "--sampler",
        "rep",
        "-n",
        "2",
        "--wait",
        "--poll-interval",
        "0.01",
        "-o",
        str(tmp_path),
    )
    assert code == EXIT_OK
    assert json.loads(server.requests[0].content)["sampler"] == "rep"
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "job_1"
    assert "100%" in captured.err
    assert (tmp_path / "grid.png").exists()


def test_job_status_wait_cancel_events(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.add("GET", "/v1/jobs/job_1", lambda r: httpx.Response(200, json=job_body("failed", 0.3, error="nan")))
    assert run(server, "job", "status", "job_1") == EXIT_OK
    assert "job_1  failed" in capsys.readouterr().out
    assert run(server, "job", "wait", "job_1", "--no-progress") == EXIT_JOB_FAILED
    server.add("DELETE", "/v1/jobs/job_1", lambda r: httpx.Response(200, json=job_body("cancelled", 0.3)))
    assert run(server, "job", "cancel", "job_1") == EXIT_OK
    assert "cancelled" in capsys.readouterr().out
    stream = "".join(
        f"event: progress\ndata: {json.dumps(job_body(s, p))}\n\n" for s, p in [("running", 0.5), ("succeeded", 1.0)]
    )
    server.add("GET", "/v1/jobs/job_1/events", lambda r: httpx.Response(200, content=stream.encode()))
    assert run(server, "job", "events", "job_1") == EXIT_OK
    assert [json.loads(line)["state"] for line in capsys.readouterr().out.splitlines()] == ["running", "succeeded"]


def test_job_result_too_early(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.add("GET", "/v1/jobs/job_1/result", lambda r: error_response(409, "conflict", "job job_1 is running"))
    server.add("GET", "/v1/jobs/job_1", lambda r: httpx.Response(200, json=job_body("running", 0.4)))
    assert run(server, "job", "result", "job_1") == EXIT_API_ERROR
    assert "409 conflict: job job_1 is running" in capsys.readouterr().err


def test_job_result_of_a_cancelled_job_exits_4_and_says_why(server: FakeServer,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    server.add("GET", "/v1/jobs/job_1/result", lambda r: error_response(409, "conflict", "job job_1 is cancelled"))
    server.add("GET", "/v1/jobs/job_1", lambda r: httpx.Response(200, json=job_body("cancelled", 0.3)))
    assert run(server, "job", "result", "job_1") == EXIT_JOB_FAILED
    err = capsys.readouterr().err
    assert "job job_1 has no result" in err and "cancelled" in err


def test_a_read_timeout_is_not_reported_as_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    code = main(["models", "--url", "http://test", "--max-retries", "0", "--timeout", "0.5"],
                transport=httpx.MockTransport(slow))
    err = capsys.readouterr().err
    assert code == EXIT_CONNECTION and "no response within 0.5 s (--timeout)" in err and "cannot reach" not in err


def test_events_into_a_closed_pipe_exit_quietly(server: FakeServer, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``gansampler job events ID | head -1``: the reader closes the pipe; no traceback, exit 0."""
    import io
    import os
    import sys

    stream = "".join(f"event: progress\ndata: {json.dumps(job_body('running', p))}\n\n" for p in (0.1, 0.2))
    server.add("GET", "/v1/jobs/job_1/events", lambda r: httpx.Response(200, content=stream.encode()))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone
    closed = io.TextIOWrapper(os.fdopen(write_end, "wb"), write_through=True)
    saved = os.dup(1)
    monkeypatch.setattr(sys, "stdout", closed)
    try:
        assert run(server, "job", "events", "job_1") == EXIT_OK
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def test_sample_as_job(server: FakeServer, tmp_path: Path) -> None:
    server.add("POST", "/v1/jobs", lambda r: httpx.Response(202, json=job_body()))
    server.add("GET", "/v1/jobs/job_1", lambda r: httpx.Response(200, json=job_body("succeeded", 1.0)))
    server.add("GET", "/v1/jobs/job_1/result", lambda r: httpx.Response(200, json=sample_body(2)))
    assert run(server, "sample", "toy", "--job", "--no-progress", "-o", str(tmp_path)) == EXIT_OK
    assert (tmp_path / "sample_0001.png").exists()
