"""Small MLP generator and discriminator for 2-D toy data (the 25-Gaussian grid and the swiss roll).

Shapes: G maps z (B, latent_dim) -> x (B, out_dim); D maps x (B, in_dim) -> raw logit (B,).
The manifest's ``kwargs`` are these constructors' keyword arguments.
"""

from __future__ import annotations

from torch import Tensor, nn

DEFAULT_LATENT_DIM = 2
DEFAULT_DATA_DIM = 2
DEFAULT_HIDDEN = 128
DEFAULT_DEPTH = 3
LEAKY_SLOPE = 0.2


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _mlp(in_dim: int, out_dim: int, hidden: int, depth: int, act: type[nn.Module] | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers.append(nn.Linear(width, hidden))
        layers.append(nn.LeakyReLU(LEAKY_SLOPE) if act is None else act())
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """z (B, latent_dim) -> x (B, out_dim); ``depth`` hidden ReLU layers of width ``hidden``."""

    def __init__(
        self,
        latent_dim: int = DEFAULT_LATENT_DIM,
        out_dim: int = DEFAULT_DATA_DIM,
        hidden: int = DEFAULT_HIDDEN,
        depth: int = DEFAULT_DEPTH,
    ) -> None:
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("out_dim", out_dim), ("hidden", hidden), ("depth", depth)):
            _check_positive(name, value)
        self.latent_dim = latent_dim
        self.net = _mlp(latent_dim, out_dim, hidden, depth, nn.ReLU)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.reshape(z.shape[0], self.latent_dim))


class Discriminator(nn.Module):
    """x (B, in_dim) -> raw logit d(x) (B,); ``depth`` hidden LeakyReLU(0.2) layers of width ``hidden``."""

    def __init__(
        self, in_dim: int = DEFAULT_DATA_DIM, hidden: int = DEFAULT_HIDDEN, depth: int = DEFAULT_DEPTH
    ) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden", hidden), ("depth", depth)):
            _check_positive(name, value)
        self.in_dim = in_dim
        self.net = _mlp(in_dim, 1, hidden, depth, None)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], self.in_dim)).reshape(-1)
