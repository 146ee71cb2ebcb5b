"""glibc malloc tuning: applied through mallopt unless another allocator or the user's own settings are in charge,
and it really keeps a 16 MiB block off mmap (checked with mallinfo2 in a fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from service import allocator
from service.allocator import tune_malloc

GLIBC = allocator._glibc() is not None

PROBE = r"""
import ctypes, ctypes.util, json
from service.allocator import tune_malloc

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                  "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def mmapped_by_one_block():
    before = libc.mallinfo2().hblks
    p = libc.malloc(16 << 20)
    after = libc.mallinfo2().hblks
    libc.free(p)
    return after - before

default = mmapped_by_one_block()
tuning = tune_malloc({})
print(json.dumps({"default": default, "tuned": mmapped_by_one_block(), "applied": tuning.applied}))
"""


@pytest.mark.skipif(not GLIBC, reason="needs glibc")
def test_a_16_mib_block_comes_from_the_heap_once_tuned() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in (*allocator.USER_VARIABLES, "LD_PRELOAD")}  # glibc with its defaults, whatever CI sets
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == {"default": 1, "tuned": 0, "applied": True}


@pytest.mark.parametrize(("environ", "why"), [
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"}, "tcmalloc is preloaded"),
    ({"LD_PRELOAD": "libjemalloc.so.2"}, "jemalloc is preloaded"),
    ({"MALLOC_MMAP_THRESHOLD_": "1048576"}, "MALLOC_MMAP_THRESHOLD_ set by the user"),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, "GLIBC_TUNABLES set by the user"),
])
def test_other_allocators_and_the_users_settings_win(environ: dict[str, str], why: str) -> None:
    tuning = tune_malloc(environ)
    assert not tuning.applied and tuning.reason.startswith(why)


def test_off_glibc_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert tune_malloc({}) == (False, "not glibc")


@pytest.mark.parametrize("enabled", [True, False])
def test_serve_applies_it_unless_switched_off(monkeypatch: pytest.MonkeyPatch, enabled: bool) -> None:
    from service.api.serve import apply_process_settings
    from service.config import Settings

    calls: list[Any] = []
    monkeypatch.setattr(allocator, "tune_malloc", lambda: calls.append(1) or allocator.MallocTuning(True, "test"))
    apply_process_settings(Settings(malloc_tuning=enabled))
    assert calls == ([1] if enabled else [])
