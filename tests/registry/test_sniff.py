"""A weight file in the wrong format (TorchScript, a pickled module, another archive kind) gets gansampler's
advice, named by field, and none of torch's advice that does not apply (``weights_only=False``,
``add_safe_globals``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from service.cli import main
from service.registry import ManifestError, UnsafeFileError, load_version
from service.registry.export import export_network
from service.registry.files import sha256_file
from service.registry.sniff import archive_kind
from tests.registry.helpers import NX, NZ, make_version, read_toml, write_manifest
from tests.registry.toy_arch import ToyG

TORCH_ADVICE = ("weights_only", "add_safe_globals", "safe_globals", "jit.load")


def torchscript(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # what users still do, deprecated or not
        torch.jit.save(torch.jit.script(ToyG(NZ, NX).eval()), str(path))


def pickled_module(path: Path) -> None:
    torch.save(ToyG(NZ, NX), path)


def exported(path: Path) -> None:
    export_network(ToyG(NZ, NX), (NZ,), path)


def state_dict(path: Path) -> None:
    torch.save(ToyG(NZ, NX).state_dict(), path)


def with_generator_file(vdir: Path, write: Callable[[Path], None], fmt: str) -> Path:
    """Replace G's file with one written by ``write``, declared as ``fmt`` (arch kept for arch formats)."""
    f = vdir / "generator.bin"
    write(f)
    m = read_toml(vdir)
    m["generator"].update(format=fmt, file=f.name, sha256=sha256_file(f))
    if fmt in ("torch_export", "onnx"):
        m["generator"].pop("arch", None)
        m["generator"].pop("kwargs", None)
    write_manifest(vdir, m)
    return vdir


def load_error(vdir: Path) -> ManifestError:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch warning on the way either
        with pytest.raises(ManifestError) as err:
            load_version(vdir)
    return err.value


def test_archive_kinds_are_told_apart(tmp_path: Path) -> None:
    for write, kind in ((torchscript, "torchscript"), (exported, "torch_export"), (state_dict, "torch_save"),
                        (pickled_module, "torch_save")):  # fmt: skip
        write(tmp_path / "f")
        assert archive_kind(tmp_path / "f") == kind, write.__name__
    (tmp_path / "f").write_bytes(b"not a zip")
    assert archive_kind(tmp_path / "f") is None


@pytest.mark.parametrize("fmt", ["state_dict", "safetensors", "torch_export", "onnx"])
def test_torchscript_is_named_with_what_to_do_instead(root: Path, fmt: str) -> None:
    err = load_error(with_generator_file(make_version(root), torchscript, fmt))
    assert err.field == "generator.file"
    assert "'generator.bin' is a TorchScript archive (torch.jit.save); TorchScript is not supported" in err.message
    assert "gansampler-server export" in err.message and "state_dict()" in err.message
    assert not any(advice in err.message for advice in TORCH_ADVICE)


def test_pickled_module_leads_with_our_advice(root: Path) -> None:
    err = load_error(with_generator_file(make_version(root), pickled_module, "state_dict"))
    assert isinstance(err, UnsafeFileError) and err.field == "generator.file"
    assert err.message.startswith("refusing 'generator.bin': not a plain state_dict, it needs unpickling code for ")
    assert "tests.registry.toy_arch.ToyG" in err.message and "save net.state_dict() instead" in err.message
    assert not any(advice in err.message for advice in TORCH_ADVICE)


@pytest.mark.parametrize(
    ("write", "fmt", "text"),
    [
        (exported, "state_dict", 'is a torch.export archive, not state_dict: set format = "torch_export"'),
        (exported, "safetensors", 'is a torch.export archive, not safetensors: set format = "torch_export"'),
        (state_dict, "torch_export", 'was written by torch.save (a state_dict?), not torch_export: set format = "'),
        (state_dict, "onnx", "was written by torch.save (a state_dict?), not onnx"),
    ],
)
def test_an_archive_of_another_kind_names_the_format_to_use(
    root: Path, write: Callable[[Path], None], fmt: str, text: str
) -> None:
    err = load_error(with_generator_file(make_version(root), write, fmt))
    assert err.field == "generator.file" and text in err.message


def test_verify_and_export_print_no_torch_warning(
    root: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with_generator_file(make_version(root), torchscript, "state_dict")
    assert main(["verify", "--root", str(root)]) == 1
    torchscript(tmp_path / "g.pt")
    args = ["export", "--arch", "tests.registry.toy_arch:ToyG", "--input-shape", str(NZ), "--out", str(tmp_path / "x")]
    assert main([*args, "--weights", str(tmp_path / "g.pt")]) == 1
    out, err = capfd.readouterr()
    assert "TorchScript is not supported" in out and "TorchScript is not supported" in err
    assert not any(advice in out + err for advice in TORCH_ADVICE)
    assert "UserWarning" not in out + err


def test_a_plain_state_dict_still_loads(root: Path) -> None:
    vdir = with_generator_file(make_version(root), state_dict, "state_dict")
    assert isinstance(load_version(vdir).networks["generator"].module, nn.Module)
