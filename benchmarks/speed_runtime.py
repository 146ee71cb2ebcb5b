"""The ``[runtime]`` settings of model.toml, each loaded through the Registry and timed against the contiguous eager
load in the same run.

For every model, each setting is a copy of the model's version directory in a temporary registry with that
``[runtime]`` table (weights and holdout as shipped), loaded with :class:`service.registry.Registry` exactly as the
server loads it:

    contiguous            memory_format = "contiguous", compile = false      (the baseline)
    auto (default)        no [runtime] table: what every model gets unless it says otherwise
    channels_last         memory_format = "channels_last"                    (image models only)
    compile               memory_format = "contiguous", compile = true
    auto + compile        compile = true                                     (image models only)
    onnxruntime           forward = "onnxruntime"     (on top of auto: forward-only calls on onnxruntime, ∇z torch)
    bfloat16              precision = "bfloat16"      (on top of auto: bf16 autocast; changes the logits)
    threads 1             threads = 1                 (on top of auto: the engine steps the model on one thread;
                                                       here each timed call runs under that count)

and timed on the sampler ceiling (``pair.generator`` then ``pair.logit``, as ``service.samplers.energy.evaluate``
calls them): G + D forward (mh, drs, sir, raw) and forward + backward w.r.t. z (rep, ddls) at each batch size, plus
one ``run_chains`` mh run. Candidates run interleaved (order reversed every other round); ``speed-up`` is the median
of per-round paired ratios against the baseline (``--baseline``, default ``contiguous``); ``max |Δ|`` compares logits
(and ∇z, and the mh run's final logits) with the baseline on the same latents / seed. ``--settings`` picks a subset
(the baseline is always included).

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/speed_runtime.py --out runtime.md        # ~3 min on 2 cores
    python benchmarks/speed_runtime.py --quick                                      # < 1 min (smoke test)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/speed_runtime.py --models dcgan64 --batches 64 256 \
        --mh-batch 64 --mh-steps 4 --out runtime64.md                               # random-weight DCGAN-64, ~4 min
    OMP_WAIT_POLICY=PASSIVE python benchmarks/speed_runtime.py --baseline "auto (default)" \
        --settings onnxruntime bfloat16 --rounds 7 --out levers.md                  # forward / precision levers

Compile times depend on the inductor cache (``/tmp/torchinductor_<user>``): the first run compiles from scratch.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tomli_w
import torch
from torch import Tensor

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    DEFAULT_MODELS_DIR,
    fmt,
    info_block,
    interleaved,
    machine_info,
    markdown_table,
    median,
    paired_ratio,
    repeated,
    timed,
)
from service.registry import LoadedModel, Registry
from service.samplers.rng import Streams

MODELS = ("digits-dcgan", "gaussians25")
BATCHES = (64, 256, 1024)
QUICK_BATCHES = (64,)
ROUNDS, QUICK_ROUNDS = 5, 3
TARGET_S, QUICK_TARGET_S = 0.1, 0.02
"""Each timed call repeats the work until it lasts about this long."""
MH_BATCH = 256
MH_STEPS, QUICK_MH_STEPS = 16, 4
SEED = 1234
BASELINE = "contiguous"
SETTINGS: dict[str, dict[str, Any] | None] = {
    "contiguous": {"memory_format": "contiguous"},
    "auto (default)": None,
    "channels_last": {"memory_format": "channels_last"},
    "compile": {"memory_format": "contiguous", "compile": True},
    "auto + compile": {"compile": True},
    "onnxruntime": {"forward": "onnxruntime"},
    "bfloat16": {"precision": "bfloat16"},
    "threads 1": {"threads": 1},
}
IMAGE_ONLY = ("channels_last", "auto + compile")
"""Settings that only differ from their neighbours on image (conv) models."""


# ----------------------------------------------------------------------------------------------------------------
# models in temporary registries


def _dcgan64_version(root: Path) -> Path:
    """pytorch/examples DCGAN-64 with seeded random weights as a state_dict model version (no holdout)."""
    from service.registry.files import sha256_file
    from service.zoo import dcgan64

    vdir = root / "dcgan64" / "1"
    vdir.mkdir(parents=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        nets = {"generator": dcgan64.Generator(), "discriminator": dcgan64.Discriminator()}
    manifest: dict[str, Any] = {
        "name": "dcgan64", "version": 1, "description": "random weights, pytorch/examples DCGAN-64",
        "latent": {"shape": [dcgan64.NZ, 1, 1]},
        "output": {"kind": "image", "shape": [dcgan64.NC, 64, 64], "range": [-1.0, 1.0]},
    }
    for role, net in nets.items():
        path = vdir / f"{role}.pth"
        torch.save(net.state_dict(), path)
        manifest[role] = {"format": "state_dict", "file": path.name, "sha256": sha256_file(path),
                          "arch": f"service.zoo.dcgan64:{type(net).__name__}"}
    manifest["discriminator"]["output"] = "probability"
    (vdir / "model.toml").write_text(tomli_w.dumps(manifest))
    return vdir


def source_version(name: str, scratch: Path, models_dir: Path) -> Path:
    """The version directory a model is copied from (the highest version under ``models_dir``)."""
    if name == "dcgan64":
        return _dcgan64_version(scratch / "source")
    versions = sorted((p for p in (models_dir / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    if not versions:
        raise SystemExit(f"no version of {name!r} under {models_dir}")
    return versions[-1]


def load_setting(src: Path, root: Path, runtime: dict[str, Any] | None, device: str) -> LoadedModel:
    """Copy ``src`` under ``root`` with ``[runtime]`` = ``runtime`` (none: the default) and load it."""
    name, version = src.parent.name, int(src.name)
    vdir = root / name / str(version)
    shutil.copytree(src, vdir)
    manifest = tomllib.loads((vdir / "model.toml").read_text())
    manifest.pop("runtime", None)
    if runtime is not None:
        manifest["runtime"] = runtime
    (vdir / "model.toml").write_text(tomli_w.dumps(manifest))
    registry = Registry(root, device=device)
    registry.scan()
    return registry.load(name, version)


# ----------------------------------------------------------------------------------------------------------------
# work


def forward_fn(model: LoadedModel, z: Tensor) -> Callable[[], Tensor]:
    def run() -> Tensor:
        with torch.no_grad():
            return model.pair.logit(model.pair.generator(z)).reshape(-1)

    return run


def grad_fn(model: LoadedModel, z: Tensor) -> Callable[[], Tensor]:
    def run() -> Tensor:
        with torch.enable_grad():
            zg = z.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(model.pair.logit(model.pair.generator(zg)).reshape(-1).sum(), zg)
        return g

    return run


def mh_fn(model: LoadedModel, batch: int, steps: int, device: str) -> Callable[[], Tensor]:
    """One mh request's run_chains (batch chains of ``steps`` steps); returns the final logits."""
    from service.samplers import SAMPLERS
    from service.samplers.driver import run_chains

    entry = SAMPLERS["mh"]
    algo = entry.cls(model.pair, entry.options_cls())

    def run() -> Tensor:
        params = algo.make_params({}, batch, device)
        return run_chains(algo, Streams.for_request(SEED, batch, device), params, steps).output.logit

    return run


def _threads(model: LoadedModel, fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
    """``fn`` under the model's ``[runtime] threads`` (as the engine's device worker runs its steps)."""
    from service.engine.threads import torch_threads

    def run() -> Tensor:
        with torch_threads(model.runtime.get("threads")):
            return fn()

    return run


def measure(fns: dict[str, Callable[[], Tensor]], rounds: int, target_s: float, device: torch.device,
            baseline: str = BASELINE) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """(ms per call, speed-up vs ``baseline``, max |Δ| vs ``baseline``) of each candidate, interleaved."""
    outs = {name: fn() for name, fn in fns.items()}  # warm-up, and the results compared
    one = timed(fns[baseline], device)
    reps = max(1, round(target_s / max(one, 1e-6)))
    times = interleaved({n: repeated(f, reps) for n, f in fns.items()}, rounds, device, warmup=False)
    ref = outs[baseline].double()
    ms = {n: median(t) / reps * 1e3 for n, t in times.items()}
    speedup = {n: paired_ratio(times[baseline], t) for n, t in times.items()}
    diff = {n: float((o.double() - ref).abs().max()) for n, o in outs.items()}
    return ms, speedup, diff


def run_model(name: str, args: argparse.Namespace, scratch: Path) -> tuple[list[list[object]], list[list[object]]]:
    """(timing rows, load rows) of one model."""
    device = torch.device(args.device)
    src = source_version(name, scratch / name, args.models_dir)
    image = len(tomllib.loads((src / "model.toml").read_text())["output"]["shape"]) == 3
    settings = {k: v for k, v in SETTINGS.items() if (image or k not in IMAGE_ONLY)
                and (args.settings is None or k in args.settings or k == args.baseline)}
    if args.skip_compile:
        settings = {k: v for k, v in settings.items() if not (v or {}).get("compile")}
    models: dict[str, LoadedModel] = {}
    load_rows: list[list[object]] = []
    for label, runtime in settings.items():
        m = load_setting(src, scratch / name / label.replace(" ", "_").replace("+", "plus"), runtime, args.device)
        models[label] = m
        rt = m.runtime
        load_rows.append([name, label, rt["memory_format"], "yes" if rt["compile"] else "no", rt["forward"],
                          rt["precision"], fmt(m.load_seconds), "; ".join(m.notes) or "-"])
        print(f"{name} [{label}]: loaded in {m.load_seconds:.2f} s; {'; '.join(m.notes) or 'no notes'}", flush=True)
    rows: list[list[object]] = []
    latent = next(iter(models.values())).pair.latent_shape
    for batch in args.batches:
        z = torch.randn(batch, *latent, generator=torch.Generator().manual_seed(SEED)).to(device)
        works: dict[str, Callable[[LoadedModel, Tensor], Callable[[], Tensor]]] = {"G + D forward": forward_fn}
        if models[args.baseline].pair.differentiable:
            works["forward + ∇z"] = grad_fn
        for work, make in works.items():
            ms, speedup, diff = measure({k: _threads(m, make(m, z)) for k, m in models.items()}, args.rounds,
                                        args.target_s, device, args.baseline)
            for label in models:
                rows.append([name, work, batch, label, fmt(ms[label]), f"{speedup[label]:.2f}x",
                             f"{diff[label]:.1e}"])
            print(f"{name} {work} batch {batch}: " + ", ".join(f"{k} {speedup[k]:.2f}x" for k in models), flush=True)
    work = f"mh run_chains, {args.mh_steps} steps"
    ms, speedup, diff = measure({k: _threads(m, mh_fn(m, args.mh_batch, args.mh_steps, args.device))
                                 for k, m in models.items()}, args.rounds, args.target_s, device, args.baseline)
    for label in models:
        rows.append([name, work, args.mh_batch, label, fmt(ms[label]), f"{speedup[label]:.2f}x", f"{diff[label]:.1e}"])
    print(f"{name} {work}: " + ", ".join(f"{k} {speedup[k]:.2f}x" for k in models), flush=True)
    return rows, load_rows


def _escaped(rows: Sequence[Sequence[object]]) -> list[list[str]]:
    """Cells with ``|`` escaped (the notes say ``max |Δ logit|``), so markdown keeps the columns."""
    return [[str(c).replace("|", "\\|") for c in row] for row in rows]


def report(rows: Sequence[Sequence[object]], load_rows: Sequence[Sequence[object]], info: dict[str, str],
           rounds: int, baseline: str = BASELINE) -> str:
    rows, load_rows = _escaped(rows), _escaped(load_rows)
    return "\n\n".join([
        "# [runtime] settings through the Registry (speed_runtime.py)",
        "### Machine\n\n" + info_block(info),
        "### What each setting loaded to (load time includes the probe checks, ONNX export and torch.compile with "
        "warm-up)\n\n"
        + markdown_table(["model", "setting", "memory format", "compiled", "forward", "precision", "load s", "notes"],
                         load_rows),
        f"### Timings (median of {rounds} interleaved rounds; ms per call of the whole batch; speed-up = median of "
        f"paired per-round ratios against `{baseline}`; max \\|Δ\\| against `{baseline}`: logits, ∇z, or the mh run's "
        "final logits)\n\n"
        + markdown_table(["model", "work", "batch", "setting", "ms", "speed-up", "max \\|Δ\\|"], rows),
    ]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--models", nargs="+", default=list(MODELS),
                   help=f"models under --models-dir, or dcgan64 (random weights); default {' '.join(MODELS)}")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--batches", nargs="+", type=int, default=None, help=f"default {BATCHES}")
    p.add_argument("--rounds", type=int, default=None, help=f"default {ROUNDS}")
    p.add_argument("--device", default="cpu")
    p.add_argument("--mh-batch", type=int, default=MH_BATCH, help=f"chains of the mh run (default {MH_BATCH})")
    p.add_argument("--mh-steps", type=int, default=None, help=f"steps of the mh run (default {MH_STEPS})")
    p.add_argument("--settings", nargs="+", default=None, choices=list(SETTINGS),
                   help="time only these settings (and the baseline); default all")
    p.add_argument("--baseline", default=BASELINE, choices=list(SETTINGS),
                   help=f"the setting speed-ups and differences are against (default {BASELINE!r})")
    p.add_argument("--skip-compile", action="store_true", help="leave out the compile settings")
    p.add_argument("--quick", action="store_true", help="one batch, fewer rounds, short timings (smoke test)")
    p.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = p.parse_args(argv)
    args.batches = args.batches or list(QUICK_BATCHES if args.quick else BATCHES)
    args.rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    args.target_s = QUICK_TARGET_S if args.quick else TARGET_S
    args.mh_steps = args.mh_steps or (QUICK_MH_STEPS if args.quick else MH_STEPS)
    info = machine_info(torch.device(args.device))
    rows: list[list[object]] = []
    load_rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="gansampler-runtime-") as tmp:
        for name in args.models:
            r, lr = run_model(name, args, Path(tmp))
            rows += r
            load_rows += lr
    text = report(rows, load_rows, info, args.rounds, args.baseline)
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
