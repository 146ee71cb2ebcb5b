"""The checks a load runs on a version's networks with fixed probe latents: G's output shape and finiteness, that G
and D are functions (the same input gives the same output) and score each row on its own (a row does not depend on
its batch), and that gradients flow through both when a gradient sampler needs them. Each failure is a
:class:`~service.registry.errors.ManifestError` naming the file and what to change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from service.registry.errors import ManifestError
from service.registry.heads import batch_size_error, fixed_batch_error
from service.registry.loaders import Network
from service.registry.schema import Manifest

PROBE_BATCH = 4
ROW_ATOL = 1e-3
"""How far a row's value may move with the batch size, relative to max(1, its magnitude): kernels for different
batch sizes round differently (measured: up to 4.5e-5 in a logit of the demo MLP), batch statistics move it by far
more."""
PROBE_SEED = 0


def probe_latents(m: Manifest, device: str) -> Tensor:
    """The load's ``PROBE_BATCH`` probe latents (PROBE_BATCH, *latent.shape), the same on every load."""
    return torch.randn((PROBE_BATCH, *m.latent.shape), generator=torch.Generator().manual_seed(PROBE_SEED)).to(device)


def _run_g(g: Network, z: Tensor) -> Tensor | Exception:
    try:
        with torch.no_grad():
            return g.fn(z)
    except Exception as exc:  # any failure of the user's network
        return exc


def probe_g(m: Manifest, g: Network, device: str, path: Path) -> tuple[Tensor, list[str]]:
    """G's output on ``PROBE_BATCH`` probe latents, checked: shape, finiteness, the same output on a second call,
    and that a row does not depend on the batch it runs in (row 0 alone against row 0 among the others). Returns
    (x, notes)."""
    z = probe_latents(m, device)
    x = _run_g(g, z)
    if isinstance(x, Exception):
        fixed = fixed_batch_error("G", "latents", g.fn, z, x)
        if fixed is not None:
            raise ManifestError(path, "generator.file", fixed)
        raise ManifestError(
            path, "latent.shape", f"G failed on a batch of latents of shape {tuple(z.shape)}: {x}"
        ) from None
    if tuple(x.shape) != (PROBE_BATCH, *m.output.shape):
        raise ManifestError(
            path,
            "output.shape",
            f"G returned {tuple(x.shape)} for {PROBE_BATCH} latents, manifest says {list(m.output.shape)}",
        )
    again = _run_g(g, z)
    diff = _row_diff(x, again) if isinstance(again, Tensor) and again.shape == x.shape else "in its shape"
    if diff is not None:
        raise ManifestError(path, "generator.file", (
            f"G is not a function of its latents: the same {PROBE_BATCH} probe latents gave different outputs, by "
            f"{diff} (noise drawn inside forward, e.g. StyleGAN's per-layer noise inputs, or dropout in training "
            "mode). MCMC needs G(z) to be the same on every call: fix the noise (StyleGAN: noise_mode='const') or "
            "make it a function of z, and save G in eval mode"
        ))
    alone = _run_g(g, z[:1])
    if isinstance(alone, Exception) or tuple(alone.shape) != (1, *m.output.shape):
        why = alone if isinstance(alone, Exception) else f"it returned shape {tuple(alone.shape)}"
        raise ManifestError(path, "generator.file", batch_size_error("G", "latents", PROBE_BATCH, 1, why))
    notes: list[str] = []
    finite = torch.isfinite(x.detach().flatten(1)).all(1)
    if not bool(finite.any()):
        raise ManifestError(path, "generator.file", (
            f"G returned non-finite values (NaN or inf) for every one of {PROBE_BATCH} probe latents: "
            "no sample it makes could be served"
        ))
    if not bool(finite.all()):
        notes.append(f"generator: non-finite output for {int((~finite).sum())} of {PROBE_BATCH} probe latents "
                     "(such proposals are rejected and counted as nonfinite)")
    diff = _row_diff(alone[0], x[0])
    if diff is not None:
        raise ManifestError(path, "generator.file", (
            f"G's output for a latent depends on the other latents of its batch: alone and in a batch of "
            f"{PROBE_BATCH} it differs by {diff} (BatchNorm in training mode, or another batch statistic). A sample "
            "must not depend on what it is batched with: save G in eval mode, with per-sample layers only"
        ))
    return x, notes


def _row_diff(a: Tensor, b: Tensor) -> str | None:
    """None when one row's values computed at two batch sizes agree (kernels round differently by batch size:
    ``ROW_ATOL`` leaves room for that, not for a batch statistic), else how they differ."""
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    if not torch.equal(torch.isfinite(a), torch.isfinite(b)):
        return "in which values are finite"
    ok = torch.isfinite(a)
    a, b = a[ok], b[ok]
    if a.numel() == 0:
        return None
    scale = float(torch.maximum(a.abs().max(), b.abs().max()).clamp(min=1.0))
    worst = float((a - b).abs().max())
    return None if worst <= ROW_ATOL * scale else f"{worst:.3g} (largest value {scale:.3g})"


def check_d_rows(raw_logit: Callable[[Tensor], Tensor], x: Tensor, path: Path) -> None:
    """D is a function of its input (a second call gives the same logits) and scores each sample on its own: its
    logit for row 0 alone equals its logit in the probe batch."""
    try:
        with torch.no_grad():
            alone, batch, again = raw_logit(x[:1]), raw_logit(x), raw_logit(x)
    except Exception as exc:  # any failure of the user's network
        raise ManifestError(path, "discriminator.file", batch_size_error("D", "samples", x.shape[0], 1, exc)) from None
    if bool(torch.isfinite(x[:1]).all()) and not bool(torch.isfinite(batch).any()):
        raise ManifestError(path, "discriminator.file",
                            f"D returned non-finite logits for every one of {x.shape[0]} probe samples of G")
    diff = _row_diff(batch, again)
    if diff is not None:
        raise ManifestError(path, "discriminator.file", (
            f"D is not a function of its input: the same {x.shape[0]} probe samples got different logits, by {diff} "
            "(dropout in training mode, or noise drawn inside forward). Its logit is the density ratio the samplers "
            "accept by: save D in eval mode, with no randomness in forward"
        ))
    diff = _row_diff(alone.reshape(-1)[:1], batch.reshape(-1)[:1])
    if diff is not None:
        raise ManifestError(path, "discriminator.file", (
            f"D's logit for a sample depends on the other samples of its batch: alone and in a batch of "
            f"{x.shape[0]} it differs by {diff} (a minibatch standard deviation layer, BatchNorm in training mode, or "
            "another batch statistic). Sampling needs a per-sample density ratio, and a sample must not depend on "
            "what it is batched with: serve a D whose logit for a sample uses that sample alone"
        ))


def gradient_break(
    m: Manifest, generator: Callable[[Tensor], Tensor], raw_logit: Callable[[Tensor], Tensor], device: str
) -> str | None:
    """Why ∇z of D(G(z)) does not exist although both backends are torch, or None when it flows.

    A forward that leaves autograd (``.detach()``, ``torch.no_grad()`` / ``inference_mode`` inside ``forward``, a
    numpy round trip) would otherwise give gradient samplers a silent zero gradient.
    """
    z = probe_latents(m, device).requires_grad_(True)
    try:
        with torch.enable_grad():
            x = generator(z)
            if not x.requires_grad:
                return "the generator's output is detached from z (.detach(), no_grad or numpy inside forward)"
            if not raw_logit(x).requires_grad:
                return "the discriminator's output is detached from its input (.detach(), no_grad or numpy inside forward)"
    except Exception as exc:  # any failure of the user's network
        return f"the forward pass fails with gradients enabled: {type(exc).__name__}: {exc}"
    return None
