"""``[runtime] threads``: validated, recorded in ``runtime``, passed to onnxruntime, and applied (then restored) by
:func:`service.engine.threads.torch_threads`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from service.engine.threads import torch_threads
from service.registry import ManifestError, load_version
from service.registry.schema import MAX_RUNTIME_THREADS
from tests.registry.helpers import make_version, with_runtime


def _toy(root: Path, runtime: dict[str, Any] | None) -> Path:
    return with_runtime(make_version(root), runtime)


def test_unset_keeps_the_process_setting(tmp_path: Path) -> None:
    m = load_version(_toy(tmp_path, None))
    assert m.runtime["threads"] is None
    assert not any(n.startswith("threads") for n in m.notes)


def test_a_thread_count_is_recorded_with_a_note(tmp_path: Path) -> None:
    m = load_version(_toy(tmp_path, {"threads": 1}))
    assert m.runtime["threads"] == 1
    assert any(n.startswith("threads: the engine steps this model on 1 CPU thread") for n in m.notes), m.notes


@pytest.mark.parametrize("value", [0, -1, MAX_RUNTIME_THREADS + 1, "2", 1.5, True])
def test_bad_thread_counts_name_the_field_and_the_value(tmp_path: Path, value: object) -> None:
    with pytest.raises(ManifestError) as e:
        load_version(_toy(tmp_path, {"threads": value}))
    assert e.value.field.startswith("runtime.threads"), e.value.field
    assert "threads" in str(e.value)


def test_onnxruntime_uses_the_models_thread_count(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    m = load_version(_toy(tmp_path, {"forward": "onnxruntime", "threads": 1}))
    assert m.runtime["forward"] == "onnxruntime", m.notes
    assert m.runtime["onnxruntime_threads"] == 1
    assert m.pair.generator.session.get_session_options().intra_op_num_threads == 1  # type: ignore[attr-defined]


def test_torch_threads_sets_and_restores_in_a_worker_thread() -> None:
    main_before = torch.get_num_threads()  # this thread has used torch: its count is its own from now on
    seen: dict[str, int] = {}
    inside = threading.Event()
    release = threading.Event()

    def worker() -> None:  # as a device worker: touches torch first, then switches per pool step
        before = torch.get_num_threads()
        target = 1 if before != 1 else 2
        with torch_threads(target):
            seen["inside"], seen["target"] = torch.get_num_threads(), target
            inside.set()
            release.wait(10)
        seen["after"] = torch.get_num_threads()
        with torch_threads(None):
            seen["none"] = torch.get_num_threads()
        try:
            with torch_threads(target):
                raise RuntimeError("a failing step")
        except RuntimeError:
            seen["after_error"] = torch.get_num_threads()
        seen["before"] = before

    t = threading.Thread(target=worker)
    t.start()
    assert inside.wait(10)
    assert torch.get_num_threads() == main_before  # the event loop's thread keeps its count during the step
    release.set()
    t.join(10)
    assert seen["inside"] == seen["target"]
    assert seen["after"] == seen["none"] == seen["after_error"] == seen["before"]
