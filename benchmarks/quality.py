"""Sample quality of every sampler against raw G on the demo models (a script, not a test).

    python benchmarks/quality.py [--root models] [--seed 0] [--out benchmarks/quality_results.md]

For each demo model (loaded and calibrated through :class:`service.registry.Registry`) and each sampler in
``SAMPLERS`` (raw, mh, rep, ddls, drs, sir), ``n`` chains run with ``service.samplers.driver.run_chains`` from one
request seed, with the model's manifest defaults (``[samplers.*]``) unless ``--steps`` overrides the chain length.
Then DDLS is swept over its step size eps on every model.

Metrics (:mod:`service.zoo.quality`): for the 2-D models the HQ fraction (within 4 sigma of a mode / the roll),
modes covered (>= 10% of the uniform share of HQ samples) and KL(mode histogram ‖ uniform); for digits the
Fréchet distance and k-NN precision / recall in the digits classifier's features against the held-out real split,
classes covered and KL(predicted-class histogram ‖ uniform). Acceptance is the mean over chains of (Σ min(1, alpha)) / proposals.

One CPU thread (``BENCH_THREADS``) so the numbers do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file
from torch import Tensor

from service.registry import Registry
from service.samplers import SAMPLERS, Streams
from service.samplers.driver import ChainRun, run_chains
from service.zoo import classifier as clf
from service.zoo.quality import class_report, mode_report
from service.zoo.toy import gaussians25_target, swissroll_target

BENCH_THREADS = 1
DEFAULT_SEED = 0
SAMPLER_ORDER = ("raw", "mh", "rep", "ddls", "drs", "sir")
TOY_MODELS = {"gaussians25": gaussians25_target, "swissroll": swissroll_target}
DIGITS_MODEL = "digits-dcgan"
DDLS_SWEEP = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


class Budget(NamedTuple):
    """Chains n and chain length K per model kind (K None: the manifest's ``steps``), and the DDLS sweep's n and T."""

    n: int
    steps: int | None
    n_sweep: int
    sweep_steps: int


TOY_BUDGET = Budget(n=2000, steps=None, n_sweep=500, sweep_steps=1000)
DIGITS_BUDGET = Budget(n=300, steps=128, n_sweep=200, sweep_steps=128)
CLASSIFIER_ROOT = Path("models")
RUN_MARKER = "## Recorded run"


class Row(NamedTuple):
    model: str
    sampler: str
    settings: str
    n: int
    steps: int
    seconds: float
    acceptance: float
    quality: dict[str, Any]


def load_classifier(root: Path) -> clf.DigitsClassifier:
    d = root / clf.CLASSIFIER_DIR
    model = clf.DigitsClassifier()
    model.load_state_dict(load_file(str(d / clf.WEIGHTS_FILE)))
    return model.eval().requires_grad_(False)


def run_sampler(
    loaded: Any, sampler: str, n: int, seed: int, steps: int | None, extra_params: dict[str, float] | None = None
) -> tuple[ChainRun, int, str, bool]:
    """Run n chains of ``sampler`` with the model's defaults; returns (run, chain length, settings, exact)."""
    entry = SAMPLERS[sampler]
    defaults = dict(loaded.sampler_defaults(sampler))
    opts: dict[str, Any] = {}
    if sampler == "drs" and "logit_max" in defaults:
        opts["logit_max"] = float(defaults.pop("logit_max"))
    manifest_steps = int(defaults.pop("steps", entry.cls.default_steps))
    length = manifest_steps if steps is None else steps
    values = {**defaults, **(extra_params or {})}
    algo = entry.cls(loaded.pair, entry.options_cls.from_dict(opts))
    params = algo.make_params({k: torch.tensor(float(v)) for k, v in values.items()}, n, "cpu")
    run = run_chains(algo, Streams.for_request(seed, n), params, 0 if sampler == "raw" else length)
    shown = {**opts, **values}
    settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
    return run, (0 if sampler == "raw" else length), settings, bool(algo.exact())


def acceptance(run: ChainRun) -> float:
    s = run.stats
    rate = s.acceptance_sum / s.proposals.clamp(min=1)
    return float(rate[s.proposals > 0].mean()) if bool((s.proposals > 0).any()) else float("nan")


def toy_quality(target_fn: Callable[[], Any]) -> Callable[[Tensor], dict[str, Any]]:
    target = target_fn()

    def q(x: Tensor) -> dict[str, Any]:
        r = mode_report(x.float(), target)
        return {"hq": r.hq_fraction, "modes": f"{r.modes_covered}/{r.n_modes}", "kl": r.mode_kl}

    return q


def digits_quality(classifier: clf.DigitsClassifier, real: Tensor) -> Callable[[Tensor], dict[str, Any]]:
    with torch.no_grad():
        real_feat = classifier.features(real).numpy()

    def q(x: Tensor) -> dict[str, Any]:
        with torch.no_grad():
            f = classifier.features(x.float())
            pred = classifier.head(f).argmax(1)
        r = class_report(f.numpy(), pred, real_feat)
        return {
            "fd": r.frechet,
            "precision": r.precision,
            "recall": r.recall,
            "classes": f"{r.classes_covered}/{r.n_classes}",
            "kl": r.class_kl,
        }

    return q


def measure(
    loaded: Any,
    sampler: str,
    n: int,
    seed: int,
    steps: int | None,
    quality: Callable[[Tensor], dict[str, Any]],
    extra: dict[str, float] | None = None,
) -> Row:
    t0 = time.perf_counter()
    run, length, settings, algo_exact = run_sampler(loaded, sampler, n, seed, steps, extra)
    secs = time.perf_counter() - t0
    q = quality(run.output.x)
    q["exact"] = algo_exact
    if sampler == "drs" and "exhausted" in run.extras:
        q["exhausted"] = float(run.extras["exhausted"].float().mean())
    if sampler == "sir" and "ess" in run.extras:
        q["ess"] = float(run.extras["ess"].float().mean())
    if sampler == "mh":
        q["accepted_any"] = float((run.stats.accepted > 0).float().mean())
    return Row(loaded.id, sampler, settings, n, length, secs, acceptance(run), q)


def fmt(v: Any) -> str:
    if isinstance(v, float) and v != v:
        return "-"  # NaN: no proposals (raw)
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table(rows: Sequence[Row], keys: Sequence[str]) -> str:
    head = ["model", "sampler", "settings", "n", "K", "accept", *keys, "extra", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        extra = ", ".join(f"{k}={fmt(v)}" for k, v in r.quality.items() if k not in keys)
        cells = [r.model, r.sampler, r.settings or "-", str(r.n), str(r.steps), fmt(r.acceptance)]
        cells += [fmt(r.quality.get(k, "")) for k in keys] + [extra or "-", f"{r.seconds:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    try:
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                if ln.startswith("Model name")
            ),
            platform.processor(),
        )
    except OSError:
        cpu = platform.processor()
    return f"{cpu}; torch {torch.__version__}; python {platform.python_version()}; {BENCH_THREADS} thread"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path("models"))
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--steps", type=int, default=None, help="override every chain length K (default: manifests)")
    p.add_argument("--models", nargs="*", default=[*TOY_MODELS, DIGITS_MODEL])
    p.add_argument("--samplers", nargs="*", default=[s for s in SAMPLER_ORDER if s in SAMPLERS])
    p.add_argument("--sweep", nargs="*", type=float, default=list(DDLS_SWEEP), help="DDLS eps values ([] to skip)")
    p.add_argument("--out", type=Path, default=None, help="write the markdown report here (default: stdout)")
    args = p.parse_args(argv)
    torch.set_num_threads(BENCH_THREADS)
    started = time.perf_counter()
    reg = Registry(args.root)
    reg.scan()
    sections: list[str] = []
    sweep_rows: list[Row] = []
    for name in args.models:
        loaded = reg.load(name, max(e.version for e in reg.entries() if e.name == name))
        if name in TOY_MODELS:
            quality, keys, budget = toy_quality(TOY_MODELS[name]), ["hq", "modes", "kl"], TOY_BUDGET
        else:
            real = loaded.pair.real
            assert real is not None, f"{name} has no holdout"
            quality = digits_quality(load_classifier(CLASSIFIER_ROOT), real)
            keys, budget = ["fd", "precision", "recall", "classes", "kl"], DIGITS_BUDGET
        steps = budget.steps if args.steps is None else args.steps
        rows = [measure(loaded, s, budget.n, args.seed, steps, quality) for s in args.samplers]
        for r in rows:
            print(table([r], keys).splitlines()[-1], file=sys.stderr, flush=True)
        cal = loaded.manifest.calibration
        cal_s = (
            "none" if cal is None else f"{cal.method} a={cal.a:.3g} b={cal.b:.3g} AUC={cal.auc:.3f} Z={cal.dawid_z:.2f}"
        )
        sections.append(f"### {loaded.id} (calibration: {cal_s})\n\n" + table(rows, keys))
        model_sweep = [
            measure(loaded, "ddls", budget.n_sweep, args.seed, budget.sweep_steps, quality, {"step_size": eps})
            for eps in args.sweep
        ]
        if model_sweep:
            raw = measure(loaded, "raw", budget.n_sweep, args.seed, None, quality)
            sweep_rows += [raw, *model_sweep]
            sections.append(
                f"#### DDLS step size sweep on {loaded.id} (T = {budget.sweep_steps})\n\n"
                + table([raw, *model_sweep], keys)
            )
            for r in model_sweep:
                print(table([r], keys).splitlines()[-1], file=sys.stderr, flush=True)
    cmd = "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = "\n".join(
        [
            RUN_MARKER,
            "",
            f"- command: `{cmd.strip()}`",
            f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- machine: {machine()}",
            f"- seed: {args.seed}; 2-D models: {TOY_BUDGET}; digits: {DIGITS_BUDGET}",
            "  (n chains, K = steps per chain, None = the manifest's `[samplers.*] steps`; `--steps` overrides K:"
            f" {args.steps})",
            f"- total time: {time.perf_counter() - started:.0f} s",
            "",
        ]
    )
    report = header + "\n" + "\n\n".join(sections) + "\n"
    if args.out is None:
        print(report)
    else:
        # Keep the hand-written findings above the marker; replace the recorded run below it.
        previous = args.out.read_text() if args.out.exists() else ""
        keep = previous[: previous.index(RUN_MARKER)] if RUN_MARKER in previous else ""
        args.out.write_text(keep + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
