"""Registry: scanning, versions, latest-ready resolution, load / unload / reload, references."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from service.registry import ModelNotFoundError, ModelNotReadyError, Registry, RegistryError, parse_ref
from tests.registry.helpers import make_version, read_toml, write_manifest


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("digits", ("digits", None)), ("digits@3", ("digits", 3)), ("a.b-c_d@10", ("a.b-c_d", 10))],
)
def test_parse_ref(ref: str, expected: tuple[str, int | None]) -> None:
    assert parse_ref(ref) == expected


@pytest.mark.parametrize("ref", ["", "@3", "x@", "x@-1", "x@1.5", "x@@2", "../etc", "x y"])
def test_parse_ref_rejects_malformed(ref: str) -> None:
    with pytest.raises(ModelNotFoundError, match="not a model reference"):
        parse_ref(ref)


def test_scan_finds_versions_and_ignores_strays(root: Path) -> None:
    make_version(root, name="a", version=1)
    make_version(root, name="a", version=2)
    make_version(root, name="b", version=7)
    (root / "a" / "notes").mkdir()  # not an integer version
    (root / "a" / "3").mkdir()  # no model.toml
    (root / "README.md").write_text("hi")
    reg = Registry(root)
    assert [e.id for e in reg.scan()] == ["a@1", "a@2", "b@7"]
    assert all(e.state == "unloaded" for e in reg.entries())


def test_empty_or_missing_root(tmp_path: Path) -> None:
    assert Registry(tmp_path / "nope").scan() == []


def test_latest_ready_version_serves_plain_names(root: Path) -> None:
    make_version(root, name="m", version=1)
    make_version(root, name="m", version=2, seed=1)
    v3 = make_version(root, name="m", version=3, seed=2)
    m = read_toml(v3)
    m["generator"]["sha256"] = "0" * 64  # v3 is broken
    write_manifest(v3, m)
    reg = Registry(root)
    reg.load_all()
    assert reg.get("m").id == "m@2"  # latest READY version
    assert reg.get("m@1").id == "m@1"
    with pytest.raises(ModelNotReadyError) as err:
        reg.get("m@3")
    assert err.value.state == "failed" and "generator.sha256" in (err.value.error or "")
    reg.unload("m", 2)
    assert reg.get("m").id == "m@1"


def test_get_unknown_and_not_ready(root: Path) -> None:
    make_version(root, name="m", version=1)
    reg = Registry(root)
    reg.scan()
    with pytest.raises(ModelNotFoundError):
        reg.get("nope")
    with pytest.raises(ModelNotFoundError, match="has no version 9"):
        reg.get("m@9")
    with pytest.raises(ModelNotReadyError) as err:
        reg.get("m")
    assert "unloaded" in str(err.value)


def test_load_unload_reload_cycle(root: Path) -> None:
    vdir = make_version(root, name="m", version=1)
    reg = Registry(root)
    reg.scan()
    model = reg.load("m", 1)
    assert reg.load("m", 1) is model  # already loaded: same object
    assert reg.entries()[0].state == "ready"
    assert reg.entries()[0].memory_bytes == model.memory_bytes > 0
    assert reg.memory_bytes() == model.memory_bytes
    entry = reg.unload("m", 1)
    assert entry.state == "unloaded" and entry.memory_bytes == 0 and reg.memory_bytes() == 0
    with pytest.raises(ModelNotReadyError):
        reg.get("m@1")
    reg.load("m", 1)
    # change the manifest on disk, reload picks it up
    m = read_toml(vdir)
    m["samplers"] = {"mh": {"steps": 12}}
    write_manifest(vdir, m)
    reloaded = reg.reload("m", 1)
    assert reloaded is not model and reloaded.sampler_defaults("mh") == {"steps": 12}
    assert reg.get("m@1") is reloaded


def test_a_failed_reload_keeps_the_loaded_copy_serving(root: Path) -> None:
    vdir = make_version(root, name="m", version=1)
    reg = Registry(root)
    reg.load_all()
    before = reg.get("m@1")
    m = read_toml(vdir)
    m["latent"] = {"shape": [5]}
    write_manifest(vdir, m)
    with pytest.raises(RegistryError, match=r"latent\.shape"):
        reg.reload("m", 1)
    e = reg.entries()[0]
    assert e.state == "ready" and e.error is None
    assert reg.get("m") is before


def test_a_failed_load_is_recorded_and_not_served(root: Path) -> None:
    vdir = make_version(root, name="m", version=1)
    m = read_toml(vdir)
    m["latent"] = {"shape": [5]}
    write_manifest(vdir, m)
    reg = Registry(root)
    with pytest.raises(RegistryError):
        reg.reload("m", 1)  # not loaded: a reload is a load
    e = reg.entries()[0]
    assert e.state == "failed" and "latent.shape" in (e.error or "")
    with pytest.raises(ModelNotReadyError):
        reg.get("m")


def test_install_swaps_a_loaded_version_and_an_unload_wins(root: Path) -> None:
    make_version(root, name="m", version=1)
    reg = Registry(root)
    old = reg.load("m", 1)
    fresh = reg.read("m", 1)
    assert reg.get("m@1") is old  # read serves nothing
    assert reg.install(fresh) and reg.get("m@1") is fresh
    other = reg.read("m", 1)
    reg.unload("m", 1)
    assert not reg.install(other)  # unloaded while it was read: stays unloaded
    assert reg.entries()[0].state == "unloaded"


def test_load_of_a_version_added_after_scan(root: Path) -> None:
    reg = Registry(root)
    reg.scan()
    make_version(root, name="late", version=4)
    assert reg.load("late", 4).id == "late@4"  # load rescans for unknown versions
    with pytest.raises(ModelNotFoundError):
        reg.load("late", 5)


def test_removed_version_disappears_on_rescan_unless_loaded(root: Path) -> None:
    make_version(root, name="a", version=1)
    make_version(root, name="b", version=1)
    reg = Registry(root)
    reg.scan()
    reg.load("b", 1)
    shutil.rmtree(root / "a")
    shutil.rmtree(root / "b")
    assert [e.id for e in reg.scan()] == ["b@1"]  # still loaded and serving
    assert reg.get("b").id == "b@1"


def test_unexpected_exception_in_user_code_is_recorded(root: Path) -> None:
    vdir = make_version(root, name="m", version=1)
    m = read_toml(vdir)
    m["generator"]["kwargs"] = {"nz": 2, "nx": 2, "hidden": -3}  # nn.Linear raises inside the user's __init__
    write_manifest(vdir, m)
    reg = Registry(root)
    reg.load_all()
    e = reg.entries()[0]
    assert e.state == "failed" and e.error is not None and str(vdir / "model.toml") in e.error


def test_loaded_model_is_on_the_registry_device_and_samples(root: Path) -> None:
    make_version(root, name="m", version=1)
    reg = Registry(root, device="cpu")
    reg.load_all()
    model = reg.get("m")
    assert model.device == "cpu"
    z = torch.randn(3, *model.pair.latent_shape)
    assert model.pair.logit(model.pair.generator(z)).shape == (3,)


def test_concurrent_loads_of_one_version_load_it_once(root: Path) -> None:
    import threading

    make_version(root, name="m", version=1)
    reg = Registry(root)
    reg.scan()
    start = threading.Barrier(4)
    results: list[object] = []

    def worker() -> None:
        start.wait()
        results.append(reg.load("m", 1))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r is results[0] for r in results)


def test_symlinked_model_directory_outside_the_root_is_ignored(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    make_version(elsewhere, name="outside", version=1)
    (root / "outside").symlink_to(elsewhere / "outside")
    make_version(root, name="inside", version=1)
    assert [e.id for e in Registry(root).scan()] == ["inside@1"]
