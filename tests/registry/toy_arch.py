"""Tiny MLP networks for registry tests, referenced by import path ``tests.registry.toy_arch:<Class>``."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ToyG(nn.Module):
    """z (B, nz) -> x (B, nx) in [-1, 1]."""

    def __init__(self, nz: int = 2, nx: int = 2, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(nz, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, nx), nn.Tanh()
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class ToyD(nn.Module):
    """x (B, nx) -> (B,) logit, or probability with ``sigmoid=True`` (a final nn.Sigmoid module)."""

    def __init__(self, nx: int = 2, hidden: int = 16, sigmoid: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(nx, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)]
        if sigmoid:
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).view(-1, 1).squeeze(1)


class ToyDFunctionalSigmoid(ToyD):
    """A probability D whose sigmoid is a function call, not a module: cannot be stripped."""

    def __init__(self, nx: int = 2, hidden: int = 16, sigmoid: bool = True) -> None:
        super().__init__(nx, hidden, sigmoid=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.net(x.flatten(1))).squeeze(1)


class ToyImageG(nn.Module):
    """z (B, nz) -> x (B, 1, 4, 4) in [-1, 1]."""

    def __init__(self, nz: int = 3) -> None:
        super().__init__()
        self.lin = nn.Linear(nz, 16)

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.lin(z)).view(-1, 1, 4, 4)


class NotAModule:
    """An importable class that is not an nn.Module (must be refused as arch)."""


class NanToyG(ToyG):
    """ToyG whose every output is NaN (a broken checkpoint): nothing it makes can be served."""

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z) * float("nan")


class BatchCoupledToyG(ToyG):
    """ToyG that centres its latents on the batch mean: a row's output depends on the other rows."""

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z - z.mean(0, keepdim=True))


class NoisyToyG(ToyG):
    """ToyG with noise drawn inside forward (as StyleGAN's per-layer noise inputs): not a function of z."""

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z) + 0.1 * torch.randn_like(self.net(z))


class DropoutToyD(ToyD):
    """ToyD that applies dropout whatever its mode: a random logit for the same sample."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.dropout(super().forward(x), p=0.5, training=True)


class MinibatchStdToyD(ToyD):
    """ToyD plus the batch's standard deviation (a ProGAN/StyleGAN-style minibatch-stddev feature)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + x.std(0).mean()


class WideToyG(ToyG):
    """ToyG scaled by ``scale``: for range [-1, 1] its output lies far outside the declared range."""

    def __init__(self, nz: int = 2, nx: int = 2, hidden: int = 16, scale: float = 50.0) -> None:
        super().__init__(nz, nx, hidden)
        self.scale = scale

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z) * self.scale


class RoundedToyG(ToyG):
    """ToyG rounded to a grid: differentiable for autograd, but ∇z is exactly zero everywhere."""

    def forward(self, z: Tensor) -> Tensor:
        return torch.round(self.net(z) * 4) / 4


class ValueBranchToyD(ToyD):
    """ToyD with Python control flow on a tensor's value: runs eagerly, cannot be traced by torch.export."""

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x)
        return y if float(y.sum()) > 0 else -y
