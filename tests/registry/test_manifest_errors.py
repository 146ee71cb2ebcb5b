"""Broken manifests and files: each error names the manifest file and the field, and says what was wrong."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from service.registry import IntegrityError, ManifestError, Registry, UnsafeFileError, load_version
from service.registry.files import sha256_file
from tests.registry.helpers import make_version, read_toml, write_manifest

Edit = Callable[[dict[str, Any], Path], None]


def setp(dotted: str, value: Any) -> Edit:
    def edit(m: dict[str, Any], vdir: Path) -> None:
        *parents, last = dotted.split(".")
        node = m
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value

    return edit


def delp(dotted: str) -> Edit:
    def edit(m: dict[str, Any], vdir: Path) -> None:
        *parents, last = dotted.split(".")
        node = m
        for p in parents:
            node = node[p]
        del node[last]

    return edit


def garbage_generator(m: dict[str, Any], vdir: Path) -> None:
    f = vdir / m["generator"]["file"]
    f.write_bytes(b"not a safetensors file at all")
    m["generator"]["sha256"] = sha256_file(f)


def holdout_wrong_shape(m: dict[str, Any], vdir: Path) -> None:
    from safetensors.torch import save_file

    f = vdir / "holdout.safetensors"
    save_file({"x": torch.zeros(8, 5)}, str(f))
    m["data"]["holdout_sha256"] = sha256_file(f)


def holdout_out_of_range(m: dict[str, Any], vdir: Path) -> None:
    from safetensors.torch import save_file

    f = vdir / "holdout.safetensors"
    save_file({"x": torch.full((8, 2), 7.0)}, str(f))
    m["data"]["holdout_sha256"] = sha256_file(f)


CASES: list[tuple[str, Edit, str, str]] = [
    ("bad sha format", setp("generator.sha256", "abc"), "generator.sha256", "expected 64 hex chars, got 'abc'"),
    ("sha mismatch", setp("discriminator.sha256", "0" * 64), "discriminator.sha256", "manifest says 000"),
    ("missing table", delp("latent"), "latent", "required field is missing"),
    ("unknown field", setp("generator.weights", "x"), "generator.weights", "unknown field"),
    ("unknown top-level field", setp("owner", "me"), "owner", "unknown field"),
    ("unknown format", setp("generator.format", "pickle"), "generator.format", "'safetensors'"),
    ("unknown D output", setp("discriminator.output", "prob"), "discriminator.output", "got 'prob'"),
    ("image shape", setp("output.kind", "image"), "output.shape", "[C, H, W]"),
    ("bad range", setp("output.range", [1.0, -1.0]), "output.range", "low < high"),
    ("negative latent dim", setp("latent.shape", [0]), "latent.shape.0", "greater than or equal to 1"),
    ("name mismatch", setp("name", "other"), "name", "does not match its directory 'toy'"),
    ("version mismatch", setp("version", 2), "version", "does not match its directory '1'"),
    ("arch missing", delp("generator.arch"), "generator.arch", "needs arch"),
    ("arch not importable", setp("generator.arch", "tests.registry.toy_arch:Nope"), "generator.arch", "cannot import"),
    ("arch module missing", setp("generator.arch", "no_such_pkg.mod:G"), "generator.arch", "cannot import"),
    (
        "arch not a module",
        setp("generator.arch", "tests.registry.toy_arch:NotAModule"),
        "generator.arch",
        "not an nn.Module",
    ),
    ("arch malformed", setp("generator.arch", "os.system"), "generator.arch", "package.module:Class"),
    ("bad kwargs", setp("generator.kwargs", {"nz": 2, "bogus": 1}), "generator.kwargs", "bogus"),
    ("weights do not fit", setp("generator.kwargs", {"nz": 2, "hidden": 8}), "generator.file", "do not fit"),
    (
        "arch for torch_export",
        setp("discriminator.format", "torch_export"),
        "discriminator.arch",
        "carries its own graph",
    ),
    ("latent shape wrong for G", setp("latent.shape", [3]), "latent.shape", "G failed"),
    ("output shape wrong", setp("output.shape", [3]), "output.shape", "G returned (4, 2)"),
    ("G all NaN", setp("generator.arch", "tests.registry.toy_arch:NanToyG"), "generator.file", "non-finite values"),
    (
        "G rows batch-coupled",
        setp("generator.arch", "tests.registry.toy_arch:BatchCoupledToyG"),
        "generator.file",
        "depends on the other latents of its batch",
    ),
    (
        "G draws noise in forward",
        setp("generator.arch", "tests.registry.toy_arch:NoisyToyG"),
        "generator.file",
        "G is not a function of its latents: the same 4 probe latents gave different outputs",
    ),
    (
        "D applies dropout in forward",
        setp("discriminator.arch", "tests.registry.toy_arch:DropoutToyD"),
        "discriminator.file",
        "D is not a function of its input: the same 4 probe samples got different logits",
    ),
    (
        "D minibatch stddev",
        setp("discriminator.arch", "tests.registry.toy_arch:MinibatchStdToyD"),
        "discriminator.file",
        "depends on the other samples of its batch",
    ),
    ("file missing", setp("generator.file", "nope.safetensors"), "generator.file", "not found"),
    ("file not readable", garbage_generator, "generator.file", "cannot read"),
    ("parent path", setp("generator.file", "../x.safetensors"), "generator.file", "without '..'"),
    ("absolute path", setp("discriminator.file", "/etc/passwd"), "discriminator.file", "relative"),
    ("bad steps", setp("samplers.rep.steps", -1), "samplers.rep.steps", "non-negative integer"),
    ("unknown sampler", setp("samplers.foo", {"steps": 1}), "samplers.foo", "unknown sampler"),
    ("non-number default", setp("samplers.rep.step_size", "big"), "samplers.rep.step_size", "big"),
    (
        "unknown sampler param",
        setp("samplers.rep.step_sise", 0.1),
        "samplers.rep.step_sise",
        "unknown parameter of rep",
    ),
    ("sampler param out of range", setp("samplers.rep.step_size", 1e9), "samplers.rep.step_size", "step_size must be"),
    ("platt without b", setp("calibration", {"method": "platt", "a": 1.0}), "calibration", "platt needs both"),
    ("unknown calibration", setp("calibration", {"method": "beta"}), "calibration.method", "got 'beta'"),
    ("holdout missing", setp("data.holdout", "gone.safetensors"), "data.holdout", "not found"),
    ("holdout sha", setp("data.holdout_sha256", "f" * 64), "data.holdout_sha256", "sha256 of 'holdout.safetensors'"),
    ("holdout shape", holdout_wrong_shape, "data.holdout", "expected shape (N >= 2, 2)"),
    ("holdout range", holdout_out_of_range, "data.holdout", "outside output.range"),
    ("critic uncalibrated", setp("discriminator.output", "critic"), "calibration", "needs a [calibration]"),
]


@pytest.mark.parametrize(("edit", "field", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_manifest_names_file_and_field(toy: Path, edit: Edit, field: str, text: str) -> None:
    manifest = read_toml(toy)
    edit(manifest, toy)
    write_manifest(toy, manifest)
    with pytest.raises(ManifestError) as err:
        load_version(toy)
    path = toy / "model.toml"
    assert err.value.field == field, str(err.value)
    assert err.value.path == path
    assert str(err.value).startswith(f"{path}: {field}: "), str(err.value)
    assert text in str(err.value)


def test_toml_syntax_error(toy: Path) -> None:
    (toy / "model.toml").write_text("name = 'toy'\nversion = \n")
    with pytest.raises(ManifestError) as err:
        load_version(toy)
    assert err.value.field == "<toml>" and "not valid TOML" in str(err.value)


def test_several_problems_are_all_listed(toy: Path) -> None:
    m = read_toml(toy)
    m["generator"]["sha256"] = "abc"
    m["discriminator"]["output"] = "nope"
    write_manifest(toy, m)
    with pytest.raises(ManifestError) as err:
        load_version(toy)
    fields = [f for f, _ in err.value.errors]
    assert fields == ["generator.sha256", "discriminator.output"]
    assert len(str(err.value).splitlines()) == 2


def test_sha_mismatch_of_changed_weights_is_an_integrity_error(toy: Path) -> None:
    f = toy / "generator.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as err:
        load_version(toy)
    assert err.value.field == "generator.sha256"


def test_symlink_escaping_the_version_directory_is_refused(toy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((toy / "generator.safetensors").read_bytes())
    os.symlink(outside, toy / "link.safetensors")
    m = read_toml(toy)
    m["generator"]["file"] = "link.safetensors"
    write_manifest(toy, m)
    with pytest.raises(UnsafeFileError) as err:
        load_version(toy)
    assert err.value.field == "generator.file" and "outside" in str(err.value)


def test_symlink_inside_the_version_directory_is_fine(toy: Path) -> None:
    os.symlink(toy / "generator.safetensors", toy / "g-link.safetensors")
    m = read_toml(toy)
    m["generator"]["file"] = "g-link.safetensors"
    write_manifest(toy, m)
    assert load_version(toy).id == "toy@1"


def test_pickled_whole_module_is_refused(root: Path) -> None:
    from tests.registry.toy_arch import ToyG

    vdir = make_version(root, g_format="state_dict")
    f = vdir / "generator.pth"
    torch.save(ToyG(), f)  # the whole module, pickled: needs code execution to load
    m = read_toml(vdir)
    m["generator"]["sha256"] = sha256_file(f)
    write_manifest(vdir, m)
    with pytest.raises(UnsafeFileError) as err:
        load_version(vdir)
    assert err.value.field == "generator.file"
    assert "save net.state_dict()" in str(err.value)


def test_checkpoint_dict_that_is_not_a_state_dict_is_refused(root: Path) -> None:
    from tests.registry.toy_arch import ToyG

    vdir = make_version(root, g_format="state_dict")
    f = vdir / "generator.pth"
    torch.save({"epoch": 3, "netG": ToyG().state_dict()}, f)
    m = read_toml(vdir)
    m["generator"]["sha256"] = sha256_file(f)
    write_manifest(vdir, m)
    with pytest.raises(ManifestError) as err:
        load_version(vdir)
    assert err.value.field == "generator.file" and "expected a state_dict of tensors" in str(err.value)


def test_a_broken_model_never_stops_the_others(root: Path) -> None:
    make_version(root, name="good")
    bad = make_version(root, name="bad")
    m = read_toml(bad)
    m["generator"]["sha256"] = "abc"
    write_manifest(bad, m)
    reg = Registry(root)
    entries = {e.id: e for e in reg.load_all()}
    assert entries["good@1"].state == "ready"
    assert entries["bad@1"].state == "failed"
    assert entries["bad@1"].error is not None
    assert str(bad / "model.toml") in entries["bad@1"].error and "generator.sha256" in entries["bad@1"].error
    assert reg.get("good").id == "good@1"
