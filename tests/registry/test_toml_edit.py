"""calibrate edits model.toml in place: its own lines change, every other byte of a hand-written file stays."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from service.cli import main
from service.registry.calibrate import calibrate_version, write_calibration
from service.registry.toml_edit import TomlEditError, _Scanner, replace_table, set_value
from service.samplers.calibration import Calibration, CalibrationReport
from tests.registry.helpers import make_version, read_toml

REPORT = CalibrationReport(auc=0.75, dawid_z=0.5, ece=0.01, brier=0.2, n=10)


def hand_written(vdir: Path, drs: str = "", calibration: str = "") -> str:
    """The toy manifest as a person writes it: comments, inline arrays and tables, odd spacing."""
    m = read_toml(vdir)
    g, d, data = m["generator"], m["discriminator"], m["data"]
    text = f"""# toy model, written by hand
name = "{m['name']}"     # must match the directory
version = {m['version']}
description = "toy MLP pair"

[latent]
shape = [2]          # z ~ N(0, I)

[output]
kind = "vector"
shape = [2]
range = [-1.0, 1.0]  # Tanh

[generator]
format = "{g['format']}"
file = "{g['file']}"
arch = "{g['arch']}"
kwargs = {{ nz = 2, nx = 2 }}
sha256 = "{g['sha256']}"

[discriminator]
format = "{d['format']}"
file = "{d['file']}"
arch = "{d['arch']}"
kwargs = {{ nx = 2 }}
output = "logit"     # raw logits
sha256 = "{d['sha256']}"

[data]
holdout = "holdout.safetensors"
holdout_sha256 = "{data['holdout_sha256']}"
{calibration}
# per-model defaults
[samplers.rep]
steps = 32  # short chains
{drs}"""
    (vdir / "model.toml").write_text(text)
    return text


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """Lines only in ``before`` and lines only in ``after`` (a line-set difference is enough for these files)."""
    b, a = before.splitlines(), after.splitlines()
    return [ln for ln in b if ln not in a], [ln for ln in a if ln not in b]


def test_calibrate_keeps_every_other_line_of_a_hand_written_manifest(root: Path) -> None:
    vdir = make_version(root, holdout=60)
    before = hand_written(vdir)
    res = calibrate_version(vdir, pilot=50)
    after = (vdir / "model.toml").read_text()
    assert res.write_note is None
    assert after.startswith(before)  # nothing before the appended tables moved
    added = after[len(before) :]
    assert added.startswith("\n[calibration]\nmethod = \"platt\"\n")
    assert added.endswith(f"\n[samplers.drs]\nlogit_max = {res.logit_max!r}\n")
    data = tomllib.loads(after)
    assert data["calibration"]["a"] == res.calibration.a and data["samplers"]["rep"] == {"steps": 32}
    # a second run replaces the values only, in place
    res2 = calibrate_version(vdir, method="isotonic", pilot=50)
    again = (vdir / "model.toml").read_text()
    assert again.startswith(before + "\n[calibration]\nmethod = \"isotonic\"\nx = [\n")
    assert again.endswith(f"\n[samplers.drs]\nlogit_max = {res2.logit_max!r}\n")
    assert tomllib.loads(again)["calibration"] == {**res2.calibration.to_dict(), **res2.report.to_dict()}
    assert not list(vdir.glob("*.bak"))


def test_existing_drs_table_keeps_its_comments_and_other_keys(root: Path) -> None:
    vdir = make_version(root, holdout=60)
    before = hand_written(
        vdir,
        drs="\n[samplers.drs]  # rejection sampling\nsteps = 64\nlogit_max = 1.5   # set by calibrate\n",
        calibration="\n# fitted by calibrate\n[calibration]\nmethod = \"identity\"  # none yet\n",
    )
    res = calibrate_version(vdir, pilot=50)
    after = (vdir / "model.toml").read_text()
    removed, added = changed_lines(before, after)
    assert removed == ['method = "identity"  # none yet', "logit_max = 1.5   # set by calibrate"]
    assert added[0] == 'method = "platt"' and added[-1] == f"logit_max = {res.logit_max!r}   # set by calibrate"
    assert "[samplers.drs]  # rejection sampling\nsteps = 64\n" in after


def test_a_layout_not_edited_in_place_is_rewritten_with_a_backup(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vdir = make_version(root, holdout=60)
    inline = "[samplers]\nrep = { steps = 32 }\ndrs = { steps = 64 }"
    before = hand_written(vdir).replace("[samplers.rep]\nsteps = 32", inline)
    (vdir / "model.toml").write_text(before)
    assert main(["calibrate", "toy", "--root", str(root), "--pilot", "50"]) == 0
    out = capsys.readouterr().out
    assert "note: rewrote model.toml as plain TOML" in out and "model.toml.bak" in out
    assert (vdir / "model.toml.bak").read_text() == before
    data = read_toml(vdir)
    assert data["samplers"]["rep"] == {"steps": 32} and data["samplers"]["drs"]["steps"] == 64
    assert "logit_max" in data["samplers"]["drs"]
    assert not list(vdir.glob(".model.*"))


def test_write_keeps_crlf_and_the_file_mode(root: Path) -> None:
    vdir = make_version(root, holdout=60)
    path = vdir / "model.toml"
    path.write_bytes(hand_written(vdir).replace("\n", "\r\n").encode())
    os.chmod(path, 0o644)
    cal = Calibration.from_dict({"method": "platt", "a": 2.0, "b": -0.25})
    assert write_calibration(path, cal, REPORT, 3.5) is None
    raw = path.read_bytes()
    assert b"\r\n[calibration]\r\nmethod = \"platt\"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert tomllib.loads(raw.decode())["calibration"]["b"] == -0.25


SCANNED = '''a = """x
[calibration]
y"""  # not a header
'q=uote'.b = 'lit # not a comment'
arr = [
  1,  # one ]
  "]",
]
[[points]]
v = 1
[ samplers . "drs" ]  # spaced
logit_max = 1e-05'''


def test_scanner_finds_statements_across_strings_arrays_and_comments() -> None:
    found = [(st.kind, st.path) for st in _Scanner(SCANNED).statements()]
    assert found == [
        ("keyvalue", ("a",)), ("keyvalue", ("q=uote", "b")), ("keyvalue", ("arr",)), ("array_header", ("points",)),
        ("keyvalue", ("v",)), ("header", ("samplers", "drs")), ("keyvalue", ("logit_max",)),
    ]  # fmt: skip
    edited = set_value(SCANNED, ("samplers", "drs"), "logit_max", 2.5)
    assert edited == SCANNED.replace("1e-05", "2.5")
    edited = replace_table(edited, ("calibration",), {"method": "identity"})
    data = tomllib.loads(edited)
    assert data["a"] == "x\n[calibration]\ny" and data["calibration"] == {"method": "identity"}
    assert edited.startswith(SCANNED.replace("1e-05", "2.5") + "\n\n[calibration]\n")


@pytest.mark.parametrize(
    "text",
    [
        "calibration = { method = 'identity' }\n",
        "calibration.method = 'identity'\n",
        "[calibration.extra]\nk = 1\n",
        "[[calibration]]\nk = 1\n",
    ],
)
def test_tables_written_another_way_are_refused(text: str) -> None:
    with pytest.raises(TomlEditError, match="calibration"):
        replace_table(text, ("calibration",), {"method": "platt"})
