"""Load-time notes: things that do not stop a version from loading but would surprise its users later.

Each function returns note strings for :attr:`LoadedModel.notes` (shown by ``verify``, ``GET /v1/models`` and the
server log). None of them refuses a model: the manifest may be right and the probe unlucky.

- :func:`range_notes`  G's probe output lies far outside ``[output] range`` (PNGs clip to the range, and the
  holdout is checked against it, so one of the two is wrong).
- :func:`steps_notes`  a ``[samplers.<name>] steps`` default above the server's request limit ``max_steps``: every
  request that leaves out ``steps`` would answer 422.
- :func:`zero_gradient_notes` ∇z of D(G(z)) is exactly zero on every probe latent (a step function such as
  ``torch.round`` in G or D): gradient samplers (rep, ddls) would move without guidance, a random walk.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from service.config import DEFAULT_MAX_JOB_STEPS, DEFAULT_MAX_STEPS, ENV_PREFIX
from service.registry.schema import Manifest

FAR_OUTSIDE_WIDTHS = 1.0
"""A value is far outside ``[low, high]`` when it lies beyond it by more than this many range widths."""
FAR_OUTSIDE_SHARE = 0.01
"""Note the range when more than this share of G's finite probe values lie far outside it."""
GRAD_SAMPLER_NAMES = "rep and ddls"


def range_notes(m: Manifest, x: Tensor) -> list[str]:
    """A note when G's probe output ``x`` (B, *output.shape) lies far outside ``output.range``; [] otherwise."""
    if m.output.range is None:
        return []
    values = x.detach().double().flatten()
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        return []
    lo, hi = m.output.range
    slack = FAR_OUTSIDE_WIDTHS * (hi - lo)
    far = float(((values < lo - slack) | (values > hi + slack)).double().mean())
    if far <= FAR_OUTSIDE_SHARE:
        return []
    return [
        f"output.range: G's output on {x.shape[0]} probe latents spans [{float(values.min()):.4g}, "
        f"{float(values.max()):.4g}], and {far:.0%} of its values lie beyond the declared range {[lo, hi]} by more "
        "than its width; images are clipped to the range and the holdout must lie in it: declare the range G "
        "produces, or check G's final activation (Tanh for [-1, 1])"
    ]


def steps_notes(
    m: Manifest, max_steps: int = DEFAULT_MAX_STEPS, max_job_steps: int = DEFAULT_MAX_JOB_STEPS
) -> list[str]:
    """A note for each ``[samplers.<name>] steps`` default above ``max_steps`` (the limit of a request)."""
    notes = []
    default = " (the server's default)" if max_steps == DEFAULT_MAX_STEPS else ""
    for name, table in sorted(m.samplers.items()):
        steps = table.get("steps")
        if not isinstance(steps, int) or steps <= max_steps:
            continue
        jobs = (
            f"and above the jobs' limit max_job_steps = {max_job_steps}, so jobs without steps fail too"
            if steps > max_job_steps
            else f"jobs (limit max_job_steps = {max_job_steps}) still run it"
        )
        notes.append(
            f"samplers.{name}.steps: default {steps} is above the request limit max_steps = {max_steps}{default}: "
            f"every {name} request that leaves out steps answers 422, {jobs}; lower the default, or raise the "
            f"server's limit ({ENV_PREFIX}MAX_STEPS)"
        )
    return notes


def zero_gradient_notes(
    generator: Callable[[Tensor], Tensor], raw_logit: Callable[[Tensor], Tensor], z: Tensor
) -> list[str]:
    """A note when ∇z of sum(D(G(z))) is exactly zero on the probe latents ``z`` (B, *latent_shape); [] when it is
    not, or when it cannot be computed (the load's gradient check reports that)."""
    z = z.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            logit = raw_logit(generator(z))
            finite = torch.isfinite(logit)
            if not bool(finite.any()) or not logit.requires_grad:
                return []
            (grad,) = torch.autograd.grad(logit[finite].sum(), z, allow_unused=True)
    except Exception:  # any failure of the user's network: not this check's to report
        return []
    if grad is not None and bool((grad != 0).any()):
        return []
    return [
        f"gradient: ∇z of D(G(z)) is exactly zero on all {z.shape[0]} probe latents (a step function such as "
        f"torch.round, or integer casts, in G or D): {GRAD_SAMPLER_NAMES} would move without guidance (a random "
        "walk); prefer mh, drs or sir for this model"
    ]
