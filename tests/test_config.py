"""Settings the server cannot start with are one clear line each, naming the variable or flag, the value and the
rule; limits that contradict each other and GANSAMPLER_* typos are refused instead of silently not applying."""

from __future__ import annotations

import pytest

from service.config import ConfigError, load_settings, unknown_env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("GANSAMPLER_"):
            monkeypatch.delenv(name)


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        load_settings()
    return str(info.value).splitlines()


def test_a_typo_names_the_closest_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = problems(monkeypatch, GANSAMPLER_MAXN="5")
    assert line.startswith("GANSAMPLER_MAXN is not a gansampler-server setting")
    assert "GANSAMPLER_MAX_N" in line


def test_the_clients_own_variables_are_not_flagged() -> None:
    assert unknown_env({"GANSAMPLER_URL": "http://x", "GANSAMPLER_API_KEY": "k", "GANSAMPLER_MAX_N": "4",
                        "OTHER": "1"}) == []


def test_a_bad_value_names_the_variable_and_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = problems(monkeypatch, GANSAMPLER_MAX_N="-1")
    assert line == "GANSAMPLER_MAX_N='-1': Input should be greater than or equal to 1"


def test_a_bad_flag_is_named_as_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"^--port 70000: Input should be less than or equal to 65535$"):
        load_settings({"port": 70000}, {"port": "--port"})


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = problems(monkeypatch, GANSAMPLER_MAXN="5", GANSAMPLER_MAX_STEPS="abc")
    assert len(lines) == 2 and lines[1].startswith("GANSAMPLER_MAX_STEPS='abc'")


def test_api_keys_that_list_no_key_are_refused_not_taken_as_no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = problems(monkeypatch, GANSAMPLER_API_KEYS=" , ")
    assert "lists no key" in line and line.startswith("GANSAMPLER_API_KEYS=' , '")
    monkeypatch.setenv("GANSAMPLER_API_KEYS", "")
    assert load_settings().api_keys == ()  # empty: no auth, as documented
    monkeypatch.setenv("GANSAMPLER_API_KEYS", " a, b ,")
    assert load_settings().api_keys == ("a", "b")


def test_an_empty_admin_token_leaves_the_admin_api_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANSAMPLER_ADMIN_TOKEN", "")  # compose's ${GANSAMPLER_ADMIN_TOKEN:-} when unset
    assert load_settings().admin_token is None


@pytest.mark.parametrize(("env", "names"), [
    ({"GANSAMPLER_DEFAULT_TIMEOUT_S": "60", "GANSAMPLER_MAX_TIMEOUT_S": "10"},
     ("GANSAMPLER_DEFAULT_TIMEOUT_S=60", "GANSAMPLER_MAX_TIMEOUT_S=10")),
    ({"GANSAMPLER_MAX_QUEUE_CHAIN_STEPS": "1500000"},
     ("GANSAMPLER_MAX_QUEUE_CHAIN_STEPS=1500000", "GANSAMPLER_MAX_CHAIN_STEPS=2000000")),
])
def test_limits_that_contradict_each_other_are_refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                       names: tuple[str, ...]) -> None:
    (line,) = problems(monkeypatch, **env)
    assert all(n in line for n in names), line
