"""Mistakes a user makes when bringing their own GAN, and the messages that must tell them the fix.

Each test builds a toy version the way a user would get it wrong and checks the registry's error names the file,
the field and the remedy (docs/bring-your-own-model.md, "Troubleshooting").
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # tests/e2e has no __init__.py
    sys.path.insert(0, str(ROOT))

from service.registry.errors import ManifestError  # noqa: E402
from service.registry.files import sha256_file  # noqa: E402
from service.registry.model import load_version  # noqa: E402
from tests.registry.helpers import NZ, make_version  # noqa: E402
from tests.registry.toy_arch import ToyG  # noqa: E402


def _edit(vdir: Path, **tables: dict[str, object]) -> None:
    path = vdir / "model.toml"
    data = tomllib.loads(path.read_text())
    for key, changes in tables.items():
        data[key].update(changes)
    path.write_bytes(tomli_w.dumps(data).encode())


def test_torch_export_with_a_fixed_batch_is_refused_with_the_fix(tmp_path: Path) -> None:
    vdir = make_version(tmp_path, g_format="torch_export", d_format="torch_export")
    g = ToyG().eval()
    program = torch.export.export(g, (torch.randn(2, NZ),))  # no dynamic_shapes: batch 2 is baked in
    torch.export.save(program, str(vdir / "generator.pt2"))
    _edit(vdir, generator={"sha256": sha256_file(vdir / "generator.pt2")})
    with pytest.raises(ManifestError) as info:
        load_version(vdir)
    assert info.value.field == "generator.file"
    assert "fixed batch size 2" in str(info.value)
    assert "dynamic_shapes" in str(info.value)


def test_an_arch_module_off_the_python_path_names_pythonpath(tmp_path: Path) -> None:
    vdir = make_version(tmp_path)
    _edit(vdir, generator={"arch": "my_own_gan_module:Generator"})
    with pytest.raises(ManifestError) as info:
        load_version(vdir)
    assert info.value.field == "generator.arch"
    assert "No module named 'my_own_gan_module'" in str(info.value)
    assert "PYTHONPATH" in str(info.value)


def test_a_missing_class_in_an_importable_module_is_not_blamed_on_pythonpath(tmp_path: Path) -> None:
    vdir = make_version(tmp_path)
    _edit(vdir, generator={"arch": "tests.registry.toy_arch:NoSuchClass"})
    with pytest.raises(ManifestError) as info:
        load_version(vdir)
    assert "has no attribute 'NoSuchClass'" in str(info.value)
    assert "PYTHONPATH" not in str(info.value)


def test_an_upper_case_sha256_is_accepted(tmp_path: Path) -> None:
    vdir = make_version(tmp_path)
    upper = sha256_file(vdir / "generator.safetensors").upper()  # as PowerShell's Get-FileHash prints it
    _edit(vdir, generator={"sha256": upper})
    assert load_version(vdir).manifest.generator.sha256 == upper.lower()


def test_calibrate_warns_about_an_inverted_or_saturated_discriminator() -> None:
    from service.registry.commands.calibrate import advice
    from service.samplers.calibration import Calibration, CalibrationReport

    good = advice(Calibration("platt", a=1.5, b=0.1), CalibrationReport(0.8, 0.3, 0.02, 0.2, 400))
    assert good == []
    inverted = advice(Calibration("platt", a=-1.3, b=-13.7), CalibrationReport(1.0, 0.17, 0.01, 0.0, 400))
    assert any("slope" in line and "BatchNorm" in line for line in inverted)
    assert any("AUC 1.000" in line for line in inverted)
    weak = advice(Calibration("platt", a=0.2, b=0.0), CalibrationReport(0.52, 0.1, 0.01, 0.25, 400))
    assert len(weak) == 1 and "barely" in weak[0]
    off = advice(Calibration("identity"), CalibrationReport(0.7, 5.0, 0.2, 0.3, 400))
    assert len(off) == 1 and "isotonic" in off[0]


def test_verify_reports_how_a_probability_discriminator_was_adapted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main

    make_version(tmp_path, d_output="probability")
    assert main(["verify", "--root", str(tmp_path)]) == 0
    assert "final sigmoid of the discriminator removed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("field", "hint"),
    [("step_size", '"params": {"step_size": ...}'), ("init", '"options": {"init": ...}'), ("temperature", None)],
)
def test_a_sampler_param_sent_at_the_top_level_says_where_it_belongs(field: str, hint: str | None) -> None:
    from fastapi.exceptions import RequestValidationError

    from service.api.errors import validation_error

    exc = RequestValidationError([{"type": "extra_forbidden", "loc": ("body", field), "msg": "x", "input": 1}])
    err = validation_error(exc)
    assert err.param == field and err.message.startswith(f"unknown field {field!r}")
    if hint is None:
        assert err.message == f"unknown field {field!r}"
    else:
        assert hint in err.message


async def test_a_version_added_after_startup_loads_through_the_admin_api(tmp_path: Path) -> None:
    from tests.api.conftest import serve

    root = tmp_path / "models"
    make_version(root, version=1)
    async with serve(root, tmp_path / "data", admin_token="t") as (client, _):
        make_version(root, version=2, seed=1)  # the user copies a new version in while the server runs
        auth = {"authorization": "Bearer t"}
        r = await client.post("/v1/admin/models/toy/2:load", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["model"]["state"] == "ready"
        r = await client.post("/v1/samples/mh", json={"model": "toy", "n": 2, "steps": 3, "seed": 0})
        assert r.status_code == 200 and r.json()["model"] == "toy@2"
        r = await client.post("/v1/admin/models/toy/3:load", headers=auth)
        assert r.status_code == 404 and "no version 3" in r.json()["error"]["message"]


@pytest.mark.parametrize("make_dir", [False, True])
async def test_serving_an_empty_or_missing_root_says_so_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, make_dir: bool
) -> None:
    from tests.api.conftest import serve

    root = tmp_path / "my-modles"  # a typo in --models
    if make_dir:
        root.mkdir()
    with caplog.at_level("WARNING", logger="service.api.hub"):
        async with serve(root, tmp_path / "data") as (client, _):
            assert (await client.get("/readyz")).status_code == 503
    expected = "holds no <name>/<version>/model.toml" if make_dir else "does not exist"
    assert any("no models to serve" in r.message and expected in r.message for r in caplog.records)


DETACHED_ARCH = '''
import torch
from torch import nn


class DetachedD(nn.Module):
    """x (B, 2) -> logit (B,), through numpy: the output no longer depends on x for autograd."""

    def __init__(self, nx: int = 2) -> None:
        super().__init__()
        self.net = nn.Linear(nx, 1)

    def forward(self, x):
        return torch.from_numpy(self.net(x).detach().numpy()).reshape(-1)
'''


def test_a_discriminator_that_leaves_autograd_is_served_forward_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "byo_detached_arch.py").write_text(DETACHED_ARCH)
    monkeypatch.syspath_prepend(str(tmp_path))
    vdir = make_version(tmp_path / "models")
    weights = torch.nn.Linear(2, 1).state_dict()
    torch.save({f"net.{k}": v for k, v in weights.items()}, vdir / "discriminator.pth")
    _edit(vdir, discriminator={"format": "state_dict", "file": "discriminator.pth",
                               "arch": "byo_detached_arch:DetachedD", "kwargs": {},
                               "sha256": sha256_file(vdir / "discriminator.pth")})
    model = load_version(vdir)
    assert model.pair.differentiable is False  # not a silent zero gradient for rep / ddls
    ok, reason = model.supports("rep")
    assert not ok and reason is not None and "detached from its input" in reason
    assert model.supports("mh") == (True, None)
    assert any(note.startswith("forward only") for note in model.notes)
