"""The Langevin move shared by REP-GAN's L2MC proposal and DDLS (docs/algorithms.md §1).

With the energy U(z) = ½‖z‖² − d~(G(z)) and ∇ log pi(z) = ∇_z d~(G(z)) − z:

    mu(z) = z + (tau/2) · (∇_z d~(G(z)) − z) = z − (tau/2) ∇U(z),        z' = mu(z) + eta · eps,  eps ~ N(0, I).

DDLS is this move with eta = √tau and no accept test; REP-GAN tests it with MALA's ratio. Both build mu and z' with
these functions, so "DDLS plus an MH test" and REP-GAN's L2MC path coincide bit for bit.
"""

from __future__ import annotations

from torch import Tensor

from service.samplers.energy import log_prior
from service.samplers.kernel import row_sq_norm, view_rows


def langevin_mean(z: Tensor, grad_logit: Tensor, tau: Tensor) -> Tensor:
    """mu(z) = z + (tau/2)(∇d~ − z). z, grad_logit (B, *latent_shape); tau (B,)."""
    return z + view_rows(tau * 0.5, z) * (grad_logit - z)


def langevin_move(mu: Tensor, eta: Tensor, eps: Tensor) -> Tensor:
    """z' = mu + eta · eps. mu, eps (B, *latent_shape); eta (B,)."""
    return mu + view_rows(eta, mu) * eps


def log_q(z_to: Tensor, mu_from: Tensor, eta: Tensor) -> Tensor:
    """log q(z_to | z_from) = −‖z_to − mu(z_from)‖² / (2 eta²) + const, (B,)."""
    return -row_sq_norm(z_to - mu_from) / (2.0 * eta * eta)


def mala_log_ratio(
    z: Tensor, logit: Tensor, mu: Tensor, z_p: Tensor, logit_p: Tensor, mu_p: Tensor, eta: Tensor
) -> Tensor:
    """log r(z → z') = log pi(z') − log pi(z) + log q(z | z') − log q(z' | z), (B,).

    log pi(z) = log p0(z) + d~(G(z)). Antisymmetric: log r(z' → z) = −log r(z → z').
    """
    return (logit_p - logit) + (log_prior(z_p) - log_prior(z)) + (log_q(z, mu_p, eta) - log_q(z_p, mu, eta))
