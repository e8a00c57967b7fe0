"""2-D toy data and a tiny MLP denoiser: diffusion you can watch point by point."""
from __future__ import annotations

import math

import torch
from torch import nn

from .data import TensorImageDataset
from .unet import timestep_embedding

TOYS = ("swiss-roll", "two-moons", "8-gaussians", "checkerboard", "rings")


def make_toy(name: str, n: int = 10000, seed: int = 0) -> torch.Tensor:
    """n points (n, 2) of toy set `name`, scaled to roughly unit spread, reproducible from `seed`."""
    g = torch.Generator().manual_seed(seed)
    u = lambda *s: torch.rand(*s, generator=g)                                   # noqa: E731
    z = lambda *s: torch.randn(*s, generator=g)                                  # noqa: E731
    if name == "swiss-roll":
        r = 1.5 * math.pi * (1 + 2 * u(n))                                       # angle = radius, as in sklearn
        x = torch.stack([r * torch.cos(r), r * torch.sin(r)], 1) / 5.0 + 0.05 * z(n, 2)
    elif name == "two-moons":
        a = math.pi * u(n)
        upper = u(n) < 0.5
        x = torch.where(upper[:, None], torch.stack([torch.cos(a), torch.sin(a)], 1),
                        torch.stack([1 - torch.cos(a), 0.5 - torch.sin(a)], 1))
        x = (x - torch.tensor([0.5, 0.25])) * 1.3 + 0.06 * z(n, 2)
    elif name == "8-gaussians":
        k = torch.randint(0, 8, (n,), generator=g).float() * (2 * math.pi / 8)
        x = 1.6 * torch.stack([torch.cos(k), torch.sin(k)], 1) + 0.1 * z(n, 2)
    elif name == "checkerboard":
        x1 = 4 * u(n) - 2
        x2 = u(n) - torch.randint(0, 2, (n,), generator=g).float() * 2
        x2 = x2 + (torch.floor(x1) % 2)                                          # fill alternating squares
        x = torch.stack([x1, x2], 1)
    elif name == "rings":
        a = 2 * math.pi * u(n)
        r = torch.where(u(n) < 1 / 3, 0.8, 2.0)                                 # two circles, points spread by length
        x = torch.stack([r * torch.cos(a), r * torch.sin(a)], 1) + 0.06 * z(n, 2)
    else:
        raise ValueError(f"unknown toy {name!r}; choose one of {', '.join(TOYS)}")
    return x.float()


def toy_dataset(name: str, n: int = 10000, seed: int = 0) -> TensorImageDataset:
    """The toy set as a dataset the Trainer accepts (items are points (2,))."""
    return TensorImageDataset(make_toy(name, n, seed))


class ToyMLP(nn.Module):
    """eps_theta(x_t, t) for 2-D points: x_t (B, 2), t (B,) -> (B, 2)."""

    def __init__(self, hidden: int = 128, layers: int = 3, emb_dim: int = 32):
        super().__init__()
        self.config = dict(hidden=hidden, layers=layers, emb_dim=emb_dim)
        self.emb_dim = emb_dim
        self.inp = nn.Linear(2 + emb_dim, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.out = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.nn.functional.silu(self.inp(torch.cat([x, timestep_embedding(t, self.emb_dim)], 1)))
        for layer in self.blocks:
            h = h + torch.nn.functional.silu(layer(h))                           # residual MLP
        return self.out(h)
