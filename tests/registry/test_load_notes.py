"""Load notes and scan reports: what loads but would surprise later is said at load and by verify, not refused."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from service.config import DEFAULT_MAX_JOB_STEPS, DEFAULT_MAX_STEPS
from service.registry import Registry, load_version
from service.registry.registry import scan_root
from tests.registry.helpers import ARCH, NX, NZ, make_version, read_toml, save_network, write_manifest


def with_generator(vdir: Path, cls: str, **kwargs: Any) -> Path:
    """Replace G by ``tests.registry.toy_arch:<cls>(nz, nx, **kwargs)`` (safetensors)."""
    import tests.registry.toy_arch as toy_arch

    kw = {"nz": NZ, "nx": NX, **kwargs}
    table = save_network(
        getattr(toy_arch, cls)(**kw), f"{ARCH}:{cls}", kw, "safetensors", vdir / "generator.safetensors", (NZ,)
    )
    m = read_toml(vdir)
    m["generator"] = table
    write_manifest(vdir, m)
    return vdir


def notes_about(vdir: Path, word: str, **load: Any) -> list[str]:
    return [n for n in load_version(vdir, **load).notes if word in n]


# ----------------------------------------------------------------------------------------------- output range (R6)
def test_g_output_far_outside_the_declared_range_is_noted(root: Path) -> None:
    vdir = with_generator(make_version(root), "WideToyG", scale=50.0)
    (note,) = notes_about(vdir, "output.range")
    assert "spans [" in note and "declared range [-1.0, 1.0]" in note and "by more than its width" in note
    model = load_version(vdir)  # loads: a note, not a refusal
    assert model.pair.generator is not None


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_g_output_within_or_near_the_range_gets_no_note(root: Path, scale: float) -> None:
    vdir = with_generator(make_version(root), "WideToyG", scale=scale)  # Tanh * 2.5: at most 1.5 beyond [-1, 1]
    assert notes_about(vdir, "output.range") == []


# ----------------------------------------------------------------------------------------------- steps default (R7)
def test_a_steps_default_above_the_request_limit_is_noted(root: Path) -> None:
    vdir = make_version(root, samplers={"mh": {"steps": DEFAULT_MAX_STEPS + 1}, "rep": {"steps": DEFAULT_MAX_STEPS}})
    (note,) = notes_about(vdir, "samplers.")
    assert note.startswith(f"samplers.mh.steps: default {DEFAULT_MAX_STEPS + 1} is above the request limit max_steps")
    assert "GANSAMPLER_MAX_STEPS" in note and "jobs (limit max_job_steps" in note
    assert notes_about(vdir, "samplers.", max_steps=DEFAULT_MAX_STEPS + 1) == []  # a server with a higher limit


def test_steps_notes_follow_the_servers_limits(root: Path) -> None:
    vdir = make_version(root, samplers={"mh": {"steps": DEFAULT_MAX_JOB_STEPS + 1}})
    (note,) = notes_about(vdir, "samplers.mh.steps")
    assert "jobs without steps fail too" in note
    assert notes_about(vdir, "samplers.", max_steps=DEFAULT_MAX_JOB_STEPS + 1) == []
    reg = Registry(root, max_steps=10, max_job_steps=DEFAULT_MAX_JOB_STEPS + 1)
    reg.load_all()
    (note,) = [n for n in reg.get("toy").notes if "samplers." in n]
    assert "max_steps = 10:" in note and "jobs (limit max_job_steps" in note


# ----------------------------------------------------------------------------------------------- zero gradient (R10)
def test_a_zero_gradient_in_z_is_noted(root: Path) -> None:
    vdir = with_generator(make_version(root), "RoundedToyG")
    (note,) = notes_about(vdir, "gradient:")
    assert "exactly zero on all" in note and "rep and ddls" in note
    assert load_version(vdir).supports("rep") == (True, None)  # still allowed: a note, not a refusal
    assert notes_about(make_version(root, name="smooth"), "gradient:") == []


# ----------------------------------------------------------------------------------------------- ignored entries (R8)
def make_strays(root: Path) -> None:
    make_version(root, name="a", version=1)
    (root / "a" / "v4").mkdir()
    (root / "a" / "3").mkdir()
    (root / "a" / "notes.txt").write_text("hi")  # not a model file: passes silently
    (root / "a" / "model.toml").write_text("")  # one level too high
    (root / "mlp" / "version-2").mkdir(parents=True)
    (root / "README.md").write_text("hi")
    (root / "generator.pt2").write_text("")
    (root / "bad name").mkdir()
    (root / "_code").mkdir()  # skipped on purpose: route-B classes live here
    (root / ".git").mkdir()


def test_scan_reports_what_it_ignored_and_why(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_strays(root)
    found, ignored = scan_root(root)
    assert list(found) == [("a", 1)]
    reasons = {str(i.path.relative_to(root)): i.reason for i in ignored}
    misplaced = "a model file outside a version directory: it belongs in <root>/<name>/<version>/"
    assert reasons == {
        "generator.pt2": misplaced,
        "a/3": "no model.toml",
        "a/model.toml": misplaced,
        "a/v4": "version directories must be integers: found 'v4'; rename it to '4'",
        "bad name": reasons["bad name"],
        "mlp/version-2": "version directories must be integers: found 'version-2'; rename it to '2'",
    }
    assert reasons["bad name"].startswith("not a model name")
    reg = Registry(root)
    with caplog.at_level(logging.WARNING, logger="service.registry.registry"):
        reg.scan()
        reg.scan()  # logged once, not on every scan
    assert sum("rename it to '4'" in r.getMessage() for r in caplog.records) == 1
    assert reg.ignored() == ignored


def test_verify_and_calibrate_name_what_was_ignored(
    root: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    make_strays(root)
    with caplog.at_level(logging.WARNING):
        assert main(["verify", "--root", str(root), "--hashes-only"]) == 0
    assert not caplog.records  # listed once, below the table, not logged as well
    out = capsys.readouterr().out
    assert "1 ok, 0 failed, 6 ignored" in out
    assert f"ignored {root / 'a' / 'v4'}: version directories must be integers: found 'v4'; rename it to '4'" in out
    assert main(["calibrate", "mlp", "--root", str(root)]) == 1
    assert "no versions of 'mlp'" in (err := capsys.readouterr().err) and "rename it to '2'" in err


def test_verify_with_only_strays_lists_them(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "mlp" / "v1").mkdir(parents=True)
    assert main(["verify", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "no model versions under" in out and "found 'v1'; rename it to '1'" in out
