"""Speed levers that need no change to the service, each measured against eager torch in the same run.

Network levers, on the ceilings of ``speed.py`` (one (G + D) forward = mh/drs/sir; forward + backward w.r.t. z =
rep/ddls), per model and batch size:

- ``torch.compile`` of G and of the calibrated logit function (inductor; compile time reported separately), and
  of G and D fused into one graph (one compiled z -> (x, logit) function: fusion across the two networks),
- channels_last memory format (convolutional models),
- ``torch.set_num_threads(1)`` instead of the default,
- onnxruntime for the forward-only ceiling (G and D exported to ONNX in a temp dir, numpy in and out, as the
  registry's ONNX backend calls it),
- bf16 autocast on CPU;

and, in fresh processes, the thread settings: torch's default, ``OMP_WAIT_POLICY=PASSIVE`` and one thread (median,
p90 and max per call: on a shared machine the default's spinning OpenMP barrier stalls when a core is taken).

Random-number levers, per MH step (a latent normal draw + an accept-test uniform): the current
``service.samplers.rng`` and ``torch.compile`` of the two draws (``dynamic=True``: the engine's batch changes).

Each lever reports the median time, its speed-up over eager and the largest absolute difference of the logits (or
of the random numbers: 0 means bit-identical). Keep only what pays.

Usage::

    python benchmarks/speed_levers.py                                   # about 5 minutes on 2 cores
    python benchmarks/speed_levers.py --models digits-dcgan --batches 256 --skip-compile
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    DEMO_MODELS,
    DemoModel,
    fmt,
    info_block,
    interleaved,
    machine_info,
    markdown_table,
    repeated,
    write_report,
)
from benchmarks._common import median as _median
from service.samplers import rng
from service.samplers.rng import Streams

BATCHES = (64, 256)
ROUNDS = 5
TARGET_S = 0.3
RNG_BATCHES = (1, 64, 256, 1024)

Fn = Callable[[Tensor], Tensor]


class _Module(nn.Module):
    """A function as an nn.Module, for the ONNX exporter."""

    def __init__(self, fn: Fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def _modules(fn: Fn) -> list[nn.Module]:
    """nn.Modules reachable from a pair function (a module itself, or a closure's cells)."""
    if isinstance(fn, nn.Module):
        return [fn]
    found: list[nn.Module] = []
    for cell in getattr(fn, "__closure__", None) or ():
        v = cell.cell_contents
        if isinstance(v, nn.Module):
            found.append(v)
        elif callable(v) and v is not fn:
            found += _modules(v)
    return found


@contextlib.contextmanager
def _channels_last(fns: Sequence[Fn]) -> Iterator[None]:
    mods = [m for f in fns for m in _modules(f)]
    for m in mods:
        m.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    try:
        yield
    finally:
        for m in mods:
            m.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


def forward_fn(g: Fn, d: Fn, z: Tensor, grad: bool) -> Callable[[], Tensor]:
    def fwd() -> Tensor:
        with torch.no_grad():
            return d(g(z)).reshape(-1)

    def fwd_bwd() -> Tensor:
        zg = z.detach().requires_grad_(True)
        logit = d(g(zg)).reshape(-1)
        torch.autograd.grad(logit.sum(), zg)
        return logit.detach()

    return fwd_bwd if grad else fwd


COMPILE_RECOMPILE_LIMIT = 256


def _joint(g: Fn, d: Fn) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    def both(z: Tensor) -> tuple[Tensor, Tensor]:
        x = g(z)
        return x, d(x)

    return both


def onnx_fn(model: DemoModel, z: Tensor, tmp: Path) -> Callable[[], Tensor]:
    import warnings

    import onnxruntime as ort

    pair = model.pair
    x = pair.generator(z[:2])
    sessions = []
    for name, fn, example in (("g", pair.generator, z[:2]), ("d", pair.logit, x)):
        path = tmp / f"{model.name}-{name}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # eval(): the exporter restores the wrapper's mode afterwards, recursively, into a wrapped G or D
            torch.onnx.export(_Module(fn).eval(), (example,), str(path), dynamo=False, input_names=["in"],
                              output_names=["out"], dynamic_axes={"in": {0: "b"}, "out": {0: "b"}})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sessions.append(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]))
    if any(m.training for f in (pair.generator, pair.logit) for m in _modules(f)):
        raise RuntimeError("ONNX export left a network in training mode")
    sg, sd = sessions
    z_np = z.contiguous().numpy()

    def run() -> Tensor:
        x = sg.run(None, {"in": z_np})[0]
        return torch.from_numpy(sd.run(None, {"in": x})[0]).reshape(-1)

    return run


def _threads(n: int, fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
    def run() -> Tensor:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return run


def network_levers(model: DemoModel, batch: int, grad: bool, compile_: bool, tmp: Path) -> list[list[object]]:
    dev = torch.device("cpu")
    pair = model.pair
    z = torch.randn(batch, *pair.latent_shape, generator=torch.Generator().manual_seed(0))
    eager = forward_fn(pair.generator, pair.logit, z, grad)
    ref = eager()
    t0 = time.perf_counter()
    eager()
    reps = max(1, round(TARGET_S / max(time.perf_counter() - t0, 1e-6)))
    cands: dict[str, Callable[[], Tensor]] = {"eager": eager}
    notes: dict[str, str] = {}
    if compile_:
        cg, cd = torch.compile(pair.generator), torch.compile(pair.logit)
        f = forward_fn(cg, cd, z, grad)
        t0 = time.perf_counter()
        f()
        notes["torch.compile"] = f"compile {time.perf_counter() - t0:.1f} s"
        cands["torch.compile"] = f
        # G and D fused into one graph: one compiled function z -> (x, D(x)) (samplers need x as well)
        joint = torch.compile(_joint(pair.generator, pair.logit))
        f = forward_fn(lambda zz: zz, lambda zz: joint(zz)[1], z, grad)
        t0 = time.perf_counter()
        f()
        notes["torch.compile G+D one graph"] = f"compile {time.perf_counter() - t0:.1f} s"
        cands["torch.compile G+D one graph"] = f
    if model.image_side:
        cands["channels_last"] = eager  # timed inside the context below
    cands["1 thread"] = _threads(1, eager)
    if not grad:
        cands["onnxruntime"] = onnx_fn(model, z, tmp)
    cands["bf16 autocast"] = lambda: _bf16(eager)
    diffs: dict[str, float] = {}
    for name, f in cands.items():
        with _channels_last([pair.generator, pair.logit]) if name == "channels_last" else contextlib.nullcontext():
            diffs[name] = float((f().float() - ref).abs().max())
    timed_fns = {n: repeated(f, reps) for n, f in cands.items() if n != "channels_last"}
    times = interleaved(timed_fns, ROUNDS, dev)
    if "channels_last" in cands:
        with _channels_last([pair.generator, pair.logit]):
            times["channels_last"] = interleaved({"cl": repeated(eager, reps)}, ROUNDS, dev)["cl"]
    base = _median(times["eager"])
    rows = []
    for name in cands:
        t = _median(times[name]) / reps
        rows.append([model.name, batch, "fwd+bwd" if grad else "fwd", name, fmt(t * 1e3), f"{base / reps / t:.2f}x",
                     f"{diffs[name]:.1e}", notes.get(name, "")])
    return rows


def _bf16(fn: Callable[[], Tensor]) -> Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return fn()


# ------------------------------------------------------------------------------------------------ random numbers


def rng_levers(batches: Sequence[int], latent: tuple[int, ...], compile_: bool) -> list[list[object]]:
    dev = torch.device("cpu")
    rows = []
    def draws(st: Streams, t: Tensor) -> tuple[Tensor, Tensor]:
        return rng.normal(st, t, 1, latent), rng.uniform(st, t, 2)

    # dynamic=True: the engine's batch changes as rows join and retire; a static compile would recompile per size
    compiled = torch.compile(draws, dynamic=True)
    compile_s = 0.0
    for batch in batches:
        st = Streams.for_request(7, batch)
        t = torch.full((batch,), 5, dtype=torch.int64)
        cands: dict[str, Callable[[], tuple[Tensor, Tensor]]] = {"rng (current)": functools.partial(draws, st, t)}
        ref = cands["rng (current)"]()
        if compile_:
            t0 = time.perf_counter()
            compiled(st, t)
            compile_s += time.perf_counter() - t0
            cands["torch.compile (dynamic)"] = functools.partial(compiled, st, t)
        diffs = {}
        for name, f in cands.items():
            out = f()
            diffs[name] = max(float((a - b).abs().max()) for a, b in zip(out, ref, strict=True))
        reps = 20
        times = interleaved({n: repeated(f, reps) for n, f in cands.items()}, ROUNDS, dev)
        base = _median(times["rng (current)"])
        for name in cands:
            tm = _median(times[name])
            note = f"first calls {compile_s:.1f} s so far" if name.startswith("torch.compile") else ""
            rows.append([batch, "x".join(map(str, latent)), name, fmt(tm / reps * 1e6), f"{base / tm:.2f}x",
                         f"{diffs[name]:.1e}", note])
    return rows


# ------------------------------------------------------------------------------------------------ thread settings

THREAD_SETTINGS: dict[str, dict[str, str]] = {
    "torch default": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}
"""Process-wide settings, each measured in a fresh process (OpenMP reads them once, at start)."""
THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
THREAD_CALLS = 40
THREAD_RUNS = 2
THREAD_MH_STEPS = 16


def _time_in_process(model_name: str, batch: int) -> dict[str, list[float]]:
    """Per-call seconds of the mh ceiling (one G + D forward) and of mh ``run_chains`` (16 steps)."""
    from benchmarks.speed_work import Samplers, ceiling_fn

    dev = torch.device("cpu")
    model = DEMO_MODELS[model_name](dev)
    fns = {"ceiling": ceiling_fn(model.pair, batch, 1, False, dev),
           "mh": Samplers().run_fn(model, "mh", batch, THREAD_MH_STEPS, dev)}
    out: dict[str, list[float]] = {}
    for name, f in fns.items():
        f()
        times = []
        for _ in range(THREAD_CALLS if name == "ceiling" else THREAD_CALLS // 4):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        out[name] = times
    return out


def thread_levers(model_name: str, batch: int) -> list[list[object]]:
    import json
    import os
    import subprocess

    times: dict[str, dict[str, list[float]]] = {k: {"ceiling": [], "mh": []} for k in THREAD_SETTINGS}
    for _ in range(THREAD_RUNS):
        for name, env in THREAD_SETTINGS.items():
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_time-in-process", model_name, str(batch)]
            base = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
            out = subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True, check=True).stdout
            for k, v in json.loads(out.strip().splitlines()[-1]).items():
                times[name][k] += v
    rows = []
    for name, t in times.items():
        for what in ("ceiling", "mh"):
            xs = sorted(t[what])
            label = "G + D forward" if what == "ceiling" else f"mh run_chains, {THREAD_MH_STEPS} steps"
            rows.append([model_name, batch, label, name, fmt(_median(xs) * 1e3), fmt(xs[int(0.9 * (len(xs) - 1))] * 1e3),
                         fmt(xs[-1] * 1e3)])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_time-in-process"]:
        import json

        print(json.dumps(_time_in_process(argv[1], int(argv[2]))))
        return 0
    # Every (model, batch, grad mode) compiles the same Python functions again (the registry's logit closure, the
    # joint G+D below): past dynamo's default limit of 8 they would silently run eager and time eager as "compiled".
    torch._dynamo.config.recompile_limit = COMPILE_RECOMPILE_LIMIT
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEMO_MODELS), choices=list(DEMO_MODELS))
    p.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    p.add_argument("--skip-compile", action="store_true", help="leave out torch.compile (slow to compile)")
    p.add_argument("--no-grad-levers", action="store_true", help="forward ceiling only")
    p.add_argument("--thread-model", default="digits-dcgan", choices=list(DEMO_MODELS))
    p.add_argument("--thread-batch", type=int, default=256)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    compile_ = not args.skip_compile
    info = machine_info(torch.device("cpu"))
    net_rows: list[list[object]] = []
    latents = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = DEMO_MODELS[name](torch.device("cpu"))
            latents.append(tuple(model.pair.latent_shape))
            for batch in args.batches:
                for grad in (False,) if args.no_grad_levers else (False, True):
                    net_rows += network_levers(model, batch, grad, compile_, Path(tmp))
                    print(f"{name} batch {batch} {'fwd+bwd' if grad else 'fwd'} done", file=sys.stderr, flush=True)
    rng_rows: list[list[object]] = []
    for latent in dict.fromkeys(latents):
        rng_rows += rng_levers(RNG_BATCHES, latent, compile_)
    thread_rows = thread_levers(args.thread_model, args.thread_batch)
    text = "\n".join([
        "## Machine", "", info_block(info), "",
        f"## Network levers (median of {ROUNDS} interleaved rounds; ms per evaluation of the whole batch)", "",
        markdown_table(["model", "batch", "work", "lever", "ms", "speed-up", "max |Δ logit|", "note"], net_rows),
        "",
        "## Random-number levers (µs per MH step: one latent normal draw + one uniform)", "",
        markdown_table(["batch", "latent", "lever", "µs", "speed-up", "max |Δ|", "note"], rng_rows), "",
        f"## Thread settings (fresh process each, {THREAD_RUNS} runs alternated; ms per call)", "",
        markdown_table(["model", "batch", "work", "setting", "median ms", "p90 ms", "max ms"], thread_rows), "",
    ])
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
