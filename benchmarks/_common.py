"""Shared helpers for the speed and scaling benchmarks: machine record, timing, peak memory, demo models, tables.

Timing rules every benchmark here keeps (the machine is shared, so absolute numbers are noisy):

- compare candidates measured in the same run, interleaved round-robin (the order alternates every round), and
  report medians of several rounds; ratios are medians of per-round paired ratios, so slow drift cancels;
- synchronise the device before reading the clock (:func:`sync`), so ``--device cuda`` times finished work;
- one untimed warm-up call per candidate before the rounds (allocator, oneDNN primitive caches, lazy init).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from service.samplers.base import GanPair

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "models"
RANDOM_WEIGHTS_SEED = 0
DCGAN64_PILOT = 256
"""Fakes whose max logit is the random-weight DCGAN-64's DRS ``logit_max``."""
"""Seed of random weights (the 64x64 DCGAN; a speed benchmark needs its shapes, not trained weights)."""


# ----------------------------------------------------------------------------------------------------------------
# Machine record


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def load_average() -> str:
    """1, 5 and 15 minute load averages (how busy the shared machine was)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine_info(device: torch.device) -> dict[str, str]:
    """What a recorded result must carry to be read later: command, date, CPU, cores, torch, threads, device."""
    info = {
        "command": " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date (UTC)": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "git commit": _git_commit(),
        "cpu": _lscpu_model(),
        "cores (os.cpu_count)": str(os.cpu_count()),
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "device": str(device),
        "http stack (uvicorn auto)": http_stack(),
        "load average at start (1/5/15 min)": load_average(),
    }
    for var in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS"):
        if var in os.environ:
            info[var] = os.environ[var]
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def http_stack() -> str:
    """The HTTP parser and event loop uvicorn's ``auto`` settings pick in this environment."""
    import importlib.util
    from importlib.metadata import version

    parser = f"httptools {version('httptools')}" if importlib.util.find_spec("httptools") else "h11"
    loop = f"uvloop {version('uvloop')}" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{parser} on {loop}"


def info_block(info: Mapping[str, str]) -> str:
    return "\n".join(f"- {k}: `{v}`" if k == "command" else f"- {k}: {v}" for k, v in info.items())


# ----------------------------------------------------------------------------------------------------------------
# Timing


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that the clock measures finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call of ``fn``, synchronised on both sides."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleaved(
    fns: Mapping[str, Callable[[], object]], rounds: int, device: torch.device, warmup: bool = True
) -> dict[str, list[float]]:
    """Per-candidate lists of ``rounds`` timings, run round-robin with the order reversed every other round.

    Each candidate gets one untimed warm-up call first (unless ``warmup`` is False: the caller warmed them).
    """
    names = list(fns)
    for name in names if warmup else ():
        fns[name]()
    sync(device)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            out[name].append(timed(fns[name], device))
    return out


_T = TypeVar("_T")


def repeated(fn: Callable[[], _T], n: int) -> Callable[[], _T]:
    """``fn`` called ``n`` (>= 1) times in a row, as one timed call; returns the last call's result."""

    def run() -> _T:
        out = fn()
        for _ in range(n - 1):
            out = fn()
        return out

    return run


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over rounds of num[i] / den[i] (times taken in the same round)."""
    return median([a / b for a, b in zip(num, den, strict=True)])


# ----------------------------------------------------------------------------------------------------------------
# Peak memory of a block: process peak RSS on CPU (Linux clear_refs), allocator peak on CUDA.


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _malloc_trim() -> None:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


class PeakMemory:
    """Context manager: ``peak_bytes`` above the memory in use at entry.

    CPU: returns freed heap pages to the OS (glibc ``malloc_trim``), resets the kernel's peak-RSS mark
    (``echo 5 > /proc/self/clear_refs``) and reads ``VmHWM``, so it counts every allocation of the process (torch,
    numpy, Python), at page granularity. Linux only.
    CUDA: ``torch.cuda.max_memory_allocated`` above the allocation at entry (the caching allocator's view).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0
        self._base = 0

    def __enter__(self) -> PeakMemory:
        sync(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            _malloc_trim()  # give freed heap pages back, or a reused free list would hide the block's peak
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._base = _status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        sync(self.device)
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _status_kib("VmHWM") * 1024
        self.peak_bytes = max(0, peak - self._base)


# ----------------------------------------------------------------------------------------------------------------
# Demo models


@dataclass(frozen=True)
class DemoModel:
    """A model to benchmark: its pair, where its weights came from (printed in the tables) and its per-sampler
    defaults from the manifest (``[samplers.<name>]``: ``steps``, numeric params, DRS ``logit_max``)."""

    name: str
    pair: GanPair
    source: str
    image_side: int = 0  # 0 for vector models
    sampler_defaults: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def _frozen(m: nn.Module, device: torch.device) -> nn.Module:
    return m.to(device).eval().requires_grad_(False)


def _image_side(pair: GanPair, device: torch.device) -> int:
    with torch.no_grad():
        x = pair.generator(torch.zeros(1, *pair.latent_shape, device=device))
    return int(x.shape[-1]) if x.dim() == 4 else 0


def _random_model(name: str, g: nn.Module, d: nn.Module, latent: tuple[int, ...], device: torch.device,
                  source: str) -> DemoModel:
    g, d = _frozen(g, device), _frozen(d, device)

    def logit(x: Tensor) -> Tensor:
        return d(x).reshape(-1)

    pair = GanPair(g, logit, latent)
    return DemoModel(name, pair, source, _image_side(pair, device))


def _seeded(build: Callable[[], tuple[nn.Module, nn.Module]]) -> tuple[nn.Module, nn.Module]:
    """Random weights from a fixed seed, without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        return build()


def dcgan64(device: torch.device) -> DemoModel:
    """pytorch/examples DCGAN-64 (nz=100, ngf=ndf=64, 3x64x64) with random weights, final sigmoid of D removed."""
    from service.zoo import dcgan64 as arch

    def build() -> tuple[nn.Module, nn.Module]:
        d = arch.Discriminator()
        if not isinstance(d.main[-1], nn.Sigmoid):
            raise ValueError("service.zoo.dcgan64.Discriminator: expected `main` to end in nn.Sigmoid")
        d.main[-1] = nn.Identity()  # the logit, as the registry serves a `probability` head
        return arch.Generator(), d

    g, d = _seeded(build)
    model = _random_model("dcgan64", g, d, (arch.NZ, 1, 1), device, "random weights, pytorch/examples DCGAN-64")
    # What `calibrate` would write to the manifest: spares DRS its 10,000-fake pilot batch in every run.
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        pilot = model.pair.logit(model.pair.generator(torch.randn(DCGAN64_PILOT, arch.NZ, 1, 1, device=device)))
    return replace(model, sampler_defaults={"drs": {"logit_max": float(pilot.max())}})


def registry_model(name: str, device: torch.device, models_dir: Path = DEFAULT_MODELS_DIR) -> DemoModel | None:
    """A trained demo model from the registry with its calibrated logit, as the server serves it (None if absent)."""
    from service.registry import Registry

    if not (models_dir / name).is_dir():
        return None
    reg = Registry(models_dir, device=str(device))
    reg.load_all([name])
    loaded = reg.get(name)
    defaults = {s: loaded.sampler_defaults(s) for s in loaded.manifest.samplers}
    return DemoModel(name, loaded.pair, f"registry {loaded.id}", _image_side(loaded.pair, device), defaults)


def gaussians25(device: torch.device) -> DemoModel:
    found = registry_model("gaussians25", device)
    if found is not None:
        return found
    from service.zoo import mlp

    g, d = _seeded(lambda: (mlp.Generator(), mlp.Discriminator()))
    return _random_model("gaussians25", g, d, (mlp.DEFAULT_LATENT_DIM,), device, "random weights (not in models/)")


def digits_dcgan(device: torch.device) -> DemoModel:
    found = registry_model("digits-dcgan", device)
    if found is not None:
        return found
    from service.zoo import dcgan

    g, d = _seeded(lambda: (dcgan.Generator16(), dcgan.Discriminator16()))
    return _random_model("digits-dcgan", g, d, (dcgan.DEFAULT_NZ, 1, 1), device, "random weights (not in models/)")


DEMO_MODELS: dict[str, Callable[[torch.device], DemoModel]] = {
    "gaussians25": gaussians25,
    "digits-dcgan": digits_dcgan,
    "dcgan64": dcgan64,
}
"""The models every speed benchmark runs on: 2-D MLP and 16x16 DCGAN (trained, from models/; random weights of the
same architecture when absent, and the tables say so), and the 64x64 DCGAN of pytorch/examples."""


# ----------------------------------------------------------------------------------------------------------------
# Tables


def fmt(x: float | None, digits: int = 3) -> str:
    """Compact number: 3 significant digits, or '-' for missing."""
    if x is None:
        return "-"
    if x != x:  # NaN
        return "nan"
    if x == 0:
        return "0"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def write_report(text: str, out: Path | None) -> None:
    """The markdown report to ``out``, or to stdout when no file is given."""
    if out is not None:
        out.write_text(text)
    else:
        print(text)
