"""gansampler-server calibrate | verify | export, end to end on toy registries."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from service.cli import main
from service.registry import Registry, load_version
from service.registry.calibrate import calibrate_version
from service.registry.files import sha256_file
from tests.registry.helpers import NX, NZ, make_version, read_toml, write_manifest


def test_calibrate_writes_the_table_and_reload_is_calibrated(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vdir = make_version(root, name="toy", version=1, samplers={"rep": {"steps": 32}}, holdout=200)
    before = read_toml(vdir)
    rc = main(["calibrate", "toy", "--root", str(root), "--pilot", "500", "--seed", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "AUC" in out and "Dawid Z" in out and "ECE" in out and "Brier" in out
    after = read_toml(vdir)
    cal = after["calibration"]
    assert cal["method"] == "platt" and {"a", "b", "auc", "dawid_z", "ece", "brier", "n"} <= set(cal)
    assert cal["n"] == 200  # the evaluation halves: 100 real + 100 fake
    for key in ("name", "version", "latent", "output", "generator", "discriminator", "data"):
        assert after[key] == before[key]
    assert after["samplers"]["rep"] == {"steps": 32}
    logit_max = after["samplers"]["drs"]["logit_max"]
    reg = Registry(root)
    reg.load_all()
    model = reg.get("toy")
    assert model.calibrated
    # logit_max is the max calibrated logit over the deterministic pilot
    gen = torch.Generator().manual_seed(3 + 1_000_003)
    z = torch.randn(500, NZ, generator=gen)
    with torch.no_grad():
        assert float(model.pair.logit(model.pair.generator(z)).max()) == pytest.approx(logit_max, rel=1e-5, abs=1e-6)
    # same seed -> same result: the command is deterministic
    assert main(["calibrate", "toy@1", "--root", str(root), "--pilot", "500", "--seed", "3"]) == 0
    assert read_toml(vdir)["calibration"] == cal


@pytest.mark.parametrize("method", ["isotonic", "identity"])
def test_calibrate_other_methods(root: Path, method: str) -> None:
    vdir = make_version(root, holdout=100)
    res = calibrate_version(vdir, method=method, pilot=200)
    assert res.calibration.method == method
    model = load_version(vdir)
    assert model.calibrated is (method != "identity")
    assert 0.0 <= res.report.auc <= 1.0


def test_calibrate_a_critic_makes_it_servable(root: Path) -> None:
    vdir = make_version(root, d_output="critic", holdout=100)
    reg = Registry(root)
    reg.load_all()
    assert reg.entries()[0].state == "failed"
    calibrate_version(vdir, pilot=100)
    assert reg.reload("toy", 1).calibrated


def test_calibrate_dry_run_writes_nothing(root: Path) -> None:
    vdir = make_version(root, holdout=50)
    text = (vdir / "model.toml").read_text()
    assert main(["calibrate", "toy", "--root", str(root), "--pilot", "50", "--dry-run"]) == 0
    assert (vdir / "model.toml").read_text() == text


def test_calibrate_errors(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_version(root, name="noholdout", holdout=0)
    assert main(["calibrate", "noholdout", "--root", str(root)]) == 1
    assert "data.holdout" in capsys.readouterr().err
    assert main(["calibrate", "missing", "--root", str(root)]) == 1
    assert "no versions of 'missing'" in capsys.readouterr().err


def test_verify_reports_every_model_and_fails_on_any_problem(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_version(root, name="good")
    make_version(root, name="fast", g_format="onnx", d_format="onnx")
    assert main(["verify", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "good@1" in out and "fast@1" in out and "2 ok, 0 failed" in out
    bad = make_version(root, name="bad")
    (bad / "discriminator.safetensors").write_bytes(b"tampered")
    for flags in ([], ["--hashes-only"]):
        assert main(["verify", "--root", str(root), *flags]) == 1
        out = capsys.readouterr().out
        assert "bad@1" in out and "FAILED" in out and "discriminator.sha256" in out
        assert "2 ok, 1 failed" in out
    assert main(["verify", "--root", str(root / "nowhere")]) == 1


def test_export_turns_a_state_dict_into_a_servable_archive(root: Path, tmp_path: Path) -> None:
    from tests.registry.toy_arch import ToyD, ToyG

    torch.manual_seed(0)
    g, d = ToyG(NZ, NX).eval(), ToyD(NX).eval()
    torch.save(g.state_dict(), tmp_path / "g.pth")
    torch.save(d.state_dict(), tmp_path / "d.pth")
    vdir = make_version(root, name="exported")
    for net, src, role, shape in ((g, "g.pth", "generator", NZ), (d, "d.pth", "discriminator", NX)):
        out = vdir / f"{role}.pt2"
        rc = main(
            ["export", "--arch", f"tests.registry.toy_arch:{type(net).__name__}", "--kwargs", "{}",
             "--weights", str(tmp_path / src), "--input-shape", str(shape), "--out", str(out)]
        )  # fmt: skip
        assert rc == 0
    m = read_toml(vdir)
    for role in ("generator", "discriminator"):
        m[role] = {"format": "torch_export", "file": f"{role}.pt2", "sha256": sha256_file(vdir / f"{role}.pt2")}
    write_manifest(vdir, m)
    model = load_version(vdir)
    z = torch.randn(1, NZ, requires_grad=True)  # batch 1 works although traced with 2
    (grad,) = torch.autograd.grad(model.pair.logit(model.pair.generator(z)).sum(), z)
    with torch.no_grad():
        assert torch.allclose(model.pair.logit(model.pair.generator(z)), d(g(z)), atol=1e-5)
    assert grad.shape == (1, NZ)


def test_export_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.registry.toy_arch import ToyG

    torch.save(ToyG(), tmp_path / "whole.pth")
    args = ["export", "--arch", "tests.registry.toy_arch:ToyG", "--input-shape", "2", "--out", str(tmp_path / "x.pt2")]
    assert main([*args, "--weights", str(tmp_path / "whole.pth")]) == 1
    assert "state_dict" in capsys.readouterr().err
    assert main([*args, "--weights", str(tmp_path / "whole.pth"), "--kwargs", "[1]"]) == 1
    assert "JSON object" in capsys.readouterr().err


def test_written_manifest_stays_valid_toml(root: Path) -> None:
    vdir = make_version(root, holdout=40)
    calibrate_version(vdir, method="isotonic", pilot=40)
    tomllib.loads((vdir / "model.toml").read_text())
    assert not list(vdir.glob(".model.*"))  # no temporary file left behind


def test_export_with_a_wrong_input_shape_names_it_and_the_fix(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.registry.toy_arch import ToyG

    torch.save(ToyG(NZ, NX).state_dict(), tmp_path / "g.pth")
    args = ["export", "--arch", "tests.registry.toy_arch:ToyG", "--weights", str(tmp_path / "g.pth"),
            "--out", str(tmp_path / "g.pt2")]  # fmt: skip
    assert main([*args, "--input-shape", "1,8,8"]) == 1
    out, err = capfd.readouterr()
    assert err.startswith("export: the network fails on an input of shape (2, 1, 8, 8): ")
    assert "--input-shape 1,8,8 gives that shape with a batch of 2" in err and "the latent shape for a generator" in err
    assert err.count("\n") == 1 and out == ""  # one line, no torch log
    assert not (tmp_path / "g.pt2").exists()


def test_export_of_an_untraceable_network_says_so_in_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.registry.toy_arch import ValueBranchToyD

    torch.save(ValueBranchToyD(NX).state_dict(), tmp_path / "d.pth")
    rc = main(["export", "--arch", "tests.registry.toy_arch:ValueBranchToyD", "--weights", str(tmp_path / "d.pth"),
               "--input-shape", str(NX), "--out", str(tmp_path / "d.pt2")])  # fmt: skip
    assert rc == 1
    out, err = capfd.readouterr()
    assert err.startswith(f"export: torch.export failed on an input of shape (2, {NX}) (the network runs on it ")
    assert err.count("\n") == 1 and out == ""  # no partial graph, no fake-tensor log


@pytest.mark.parametrize(("ece", "z", "noted"), [(0.166, 0.4, True), (0.1, 0.4, False), (0.3, 5.0, False)])
def test_calibrate_notes_a_large_ece(ece: float, z: float, noted: bool) -> None:
    from service.registry.commands.calibrate import advice
    from service.samplers.calibration import Calibration, CalibrationReport

    notes = advice(Calibration("platt", a=1.5, b=0.1), CalibrationReport(0.8, z, ece, 0.2, 396))
    ece_notes = [n for n in notes if "ECE" in n]
    assert len(ece_notes) == int(noted)
    if noted:
        assert ece_notes[0].startswith(f"note: ECE {ece:.3f} > 0.1 with |Dawid Z| <= 2.0")
        assert "larger holdout" in ece_notes[0]
