"""Settings the server cannot start with are one clear line each, naming the variable or flag, the value and the
rule; limits that contradict each other and GANSAMPLER_* typos are refused instead of silently not applying.

Every test passes its environment explicitly (``environ=``): none reads the real ``os.environ``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from service.config import (
    CLIENT_ENV,
    DEFAULT_MAX_CHAIN_STEPS,
    ConfigError,
    Settings,
    data_dir_problem,
    load_settings,
    unknown_env,
)


def problems(env: dict[str, str], overrides: dict[str, object] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(overrides, environ=env)
    return str(info.value).splitlines()


def test_the_given_environment_is_read_not_the_process_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANSAMPLER_MAX_N", "-1")  # would fail if os.environ were read
    assert load_settings(environ={"GANSAMPLER_MAX_N": "7"}).max_n == 7
    assert load_settings(environ={}).max_n == Settings.model_fields["max_n"].default


def test_a_flag_overrides_the_environment() -> None:
    s = load_settings({"port": 9001}, environ={"GANSAMPLER_PORT": "9000", "GANSAMPLER_HOST": "0.0.0.0"})
    assert (s.port, s.host) == (9001, "0.0.0.0")


@pytest.mark.parametrize(("env", "line"), [
    ({"GANSAMPLER_MAX_N": "-1"}, "GANSAMPLER_MAX_N=-1: must be >= 1"),
    ({"GANSAMPLER_MAX_N": "abc"}, "GANSAMPLER_MAX_N=abc: must be an integer"),
    ({"GANSAMPLER_TORCH_THREADS": "0"}, "GANSAMPLER_TORCH_THREADS=0: must be >= 1"),
    ({"GANSAMPLER_MALLOC_TUNING": "maybe"},
     "GANSAMPLER_MALLOC_TUNING=maybe: must be true or false (or 1/0, yes/no, on/off)"),
    ({"GANSAMPLER_JOB_BATCH_FRACTION": "1.5"}, "GANSAMPLER_JOB_BATCH_FRACTION=1.5: must be <= 1"),
    ({"GANSAMPLER_MAX_TIMEOUT_S": "0"}, "GANSAMPLER_MAX_TIMEOUT_S=0: must be > 0"),
    ({"GANSAMPLER_DEVICE": "gpu"},
     "GANSAMPLER_DEVICE=gpu: device must be 'cpu[:i]', 'cuda[:i]' or 'mps', got 'gpu'"),
    ({"GANSAMPLER_TORCH_THREADS": ""}, "GANSAMPLER_TORCH_THREADS='': must be an integer"),  # blank: quoted
    ({"gansampler_max_n": "-3"}, "gansampler_max_n=-3: must be >= 1"),  # read case-insensitively, named as set
])
def test_a_bad_value_is_one_line_naming_the_variable_the_value_and_the_limit(env: dict[str, str],
                                                                            line: str) -> None:
    assert problems(env) == [line]


@pytest.mark.parametrize(("overrides", "line"), [
    ({"port": 70000}, "--port 70000: must be <= 65535"),
    ({"torch_threads": 0}, "--torch-threads 0: must be >= 1"),
    ({"device": "cuda:0,cuda:0"}, "--device cuda:0,cuda:0: device lists a device twice: ['cuda:0', 'cuda:0']"),
])
def test_a_bad_flag_is_named_as_the_flag(overrides: dict[str, object], line: str) -> None:
    assert problems({"GANSAMPLER_PORT": "80"}, overrides) == [line]


def test_flags_can_be_named_by_the_caller() -> None:
    with pytest.raises(ConfigError, match=r"^-p 70000: must be <= 65535$"):
        load_settings({"port": 70000}, {"port": "-p"}, environ={})


def test_a_typo_names_the_closest_settings() -> None:
    (line,) = problems({"GANSAMPLER_MAXN": "5"})
    assert line == ("GANSAMPLER_MAXN is not a gansampler-server setting; did you mean GANSAMPLER_MAX_N or "
                    "GANSAMPLER_MAX_JOB_N?")
    (line,) = problems({"GANSAMPLER_SHUTDOWN_GRACE": "5"})
    assert line.endswith("did you mean GANSAMPLER_SHUTDOWN_GRACE_S?")


def test_a_name_close_to_nothing_says_where_the_settings_are() -> None:
    (line,) = problems({"GANSAMPLER_LOGLEVEL": "debug"})
    assert line.startswith("GANSAMPLER_LOGLEVEL is not a gansampler-server setting; the settings are")
    assert "did you mean" not in line  # the shared prefix alone makes no match


def test_the_clients_own_variables_are_not_flagged() -> None:
    env = {"GANSAMPLER_URL": "http://x", "GANSAMPLER_API_KEY": "k", "GANSAMPLER_MAX_N": "4", "OTHER": "1"}
    assert unknown_env(env) == []
    assert load_settings(environ=env).max_n == 4


def test_every_variable_the_sdk_reads_is_known_to_the_server() -> None:
    """A variable added to the SDK (its ENV_* constants) must join CLIENT_ENV, or a shell that holds it for the CLI
    could not start the server."""
    from gansampler import _constants

    sdk = {v for k, v in vars(_constants).items() if k.startswith("ENV_") and isinstance(v, str)}
    assert sdk and sdk <= CLIENT_ENV


def test_the_sdk_key_alone_warns_that_the_server_is_not_using_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="service.config"):
        assert load_settings(environ={"GANSAMPLER_API_KEY": "k"}).api_keys == ()
    assert "GANSAMPLER_API_KEYS" in caplog.text and "not the server's" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="service.config"):
        load_settings(environ={"GANSAMPLER_API_KEY": "k", "GANSAMPLER_API_KEYS": "k"})
    assert caplog.text == ""


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    lines = problems({"GANSAMPLER_MAXN": "5", "GANSAMPLER_MAX_STEPS": "abc", "GANSAMPLER_PORT": "-2",
                      "GANSAMPLER_DATA_DIR": str(tmp_path / "f")})
    assert len(lines) == 4
    assert lines[0].startswith("GANSAMPLER_MAXN ")
    assert sorted(lines[1:3]) == ["GANSAMPLER_MAX_STEPS=abc: must be an integer", "GANSAMPLER_PORT=-2: must be >= 0"]
    assert lines[3] == f"GANSAMPLER_DATA_DIR={tmp_path / 'f'}: data dir is not a directory"  # though others failed


def test_api_keys_that_list_no_key_are_refused_not_taken_as_no_auth() -> None:
    (line,) = problems({"GANSAMPLER_API_KEYS": " , "})
    assert line.startswith("GANSAMPLER_API_KEYS=' , ': lists no key")
    assert load_settings(environ={"GANSAMPLER_API_KEYS": ""}).api_keys == ()  # empty: no auth, as documented
    assert load_settings(environ={"GANSAMPLER_API_KEYS": " a, b ,"}).api_keys == ("a", "b")


def test_an_empty_admin_token_leaves_the_admin_api_off() -> None:
    """Off, not an error: compose passes ${GANSAMPLER_ADMIN_TOKEN:-} (empty when unset), and an admin API without a
    token answers 401 to everyone, so a blank token fails closed (unlike blank API keys, which would fail open)."""
    for blank in ("", "  "):
        assert load_settings(environ={"GANSAMPLER_ADMIN_TOKEN": blank}).admin_token is None


@pytest.mark.parametrize(("env", "line"), [
    ({"GANSAMPLER_DEFAULT_TIMEOUT_S": "60", "GANSAMPLER_MAX_TIMEOUT_S": "10"},
     "GANSAMPLER_DEFAULT_TIMEOUT_S=60 must be <= GANSAMPLER_MAX_TIMEOUT_S=10: requests without timeout_s would run "
     "past the maximum"),
    ({"GANSAMPLER_MAX_TIMEOUT_S": "10"},  # the other side at its default: named as such, the set one first
     "GANSAMPLER_MAX_TIMEOUT_S=10 must be >= GANSAMPLER_DEFAULT_TIMEOUT_S=60 (default): requests without timeout_s "
     "would run past the maximum"),
    ({"GANSAMPLER_MAX_QUEUE_CHAIN_STEPS": "1500000"},
     f"GANSAMPLER_MAX_QUEUE_CHAIN_STEPS=1500000 must be >= GANSAMPLER_MAX_CHAIN_STEPS={DEFAULT_MAX_CHAIN_STEPS} "
     "(default): a request within max_chain_steps could never be admitted"),
    ({"GANSAMPLER_MAX_CHAIN_STEPS": "30000000", "GANSAMPLER_MAX_QUEUE_CHAIN_STEPS": "20000000"},
     "GANSAMPLER_MAX_CHAIN_STEPS=30000000 must be <= GANSAMPLER_MAX_QUEUE_CHAIN_STEPS=20000000: a request within "
     "max_chain_steps could never be admitted"),
])
def test_limits_that_contradict_each_other_name_both_settings_and_values(env: dict[str, str], line: str) -> None:
    assert problems(env) == [line]


def test_both_contradictions_at_once_and_equal_limits_agree() -> None:
    lines = problems({"GANSAMPLER_MAX_TIMEOUT_S": "10", "GANSAMPLER_MAX_QUEUE_CHAIN_STEPS": "5"})
    assert [line.split()[0] for line in lines] == ["GANSAMPLER_MAX_TIMEOUT_S=10", "GANSAMPLER_MAX_QUEUE_CHAIN_STEPS=5"]
    s = load_settings(environ={"GANSAMPLER_MAX_TIMEOUT_S": "60", "GANSAMPLER_MAX_QUEUE_CHAIN_STEPS": "2000000"})
    assert (s.max_timeout_s, s.max_queue_chain_steps) == (60, 2_000_000)


def test_jobs_limits_below_the_requests_ones_are_allowed() -> None:
    """Not a contradiction (jobs are their own route with their own limits): an operator may keep jobs small."""
    s = load_settings(environ={"GANSAMPLER_MAX_JOB_N": "10", "GANSAMPLER_MAX_JOB_CHAIN_STEPS": "100"})
    assert (s.max_job_n, s.max_job_chain_steps) == (10, 100)


def test_settings_built_directly_refuse_contradicting_limits_too() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="max_chain_steps must be <= max_queue_chain_steps"):
        Settings(max_queue_chain_steps=10, max_chain_steps=100)


def test_an_unusable_data_dir_names_the_variable_or_the_flag(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert problems({"GANSAMPLER_DATA_DIR": str(f / "sub")}) == [
        f"GANSAMPLER_DATA_DIR={f / 'sub'}: data dir cannot be created: {f} is not a directory"]
    assert problems({}, {"data_dir": f}) == [f"--data-dir {f}: data dir is not a directory"]
    assert load_settings({"data_dir": tmp_path / "a" / "b"}, environ={}).data_dir == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # nothing created: serve creates (and locks) it


def test_a_data_dir_that_is_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a non-root user on a read-only mount
    assert data_dir_problem(tmp_path) == "is not writable"
    assert data_dir_problem(tmp_path / "new") == f"cannot be created: {tmp_path} is not writable"
