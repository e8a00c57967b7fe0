"""Distances between two point sets, to say how close samples are to a distribution: the energy distance and
the sliced Wasserstein distance (2-D toys: ddpm/toy_metrics.py; tests/test_flow.py checks both against scipy)."""
from __future__ import annotations

import torch

from .toy import make_toy


def _mean_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """E|A - B| over all pairs, in float64: a (n, d), b (m, d) -> scalar. Exact distances (no |a|^2 + |b|^2 - 2ab
    shortcut, whose rounding would leave ~1e-8 where a point meets itself)."""
    return torch.cdist(a.double(), b.double(), compute_mode="donot_use_mm_for_euclid_dist").mean()


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Squared energy distance (Székely & Rizzo 2013) between point sets x (n, d) and y (m, d):

        D^2 = 2 E|X - Y| - E|X - X'| - E|Y - Y'|

    as a V-statistic (the expectations over all pairs, a point with itself included): the energy distance of
    the two empirical distributions, so >= 0, and 0 exactly when the sets are equal. scipy.stats.energy_distance
    (1-D only) is the square root of this.
    """
    return float(2 * _mean_dist(x, y) - _mean_dist(x, x) - _mean_dist(y, y))


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, projections: int = 256, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance (Rabin et al. 2011) between equal-sized sets x, y (n, d): the mean over
    random unit directions theta of W1 between the projections, each W1 being the mean gap between sorted values."""
    if x.shape != y.shape:
        raise ValueError(f"sliced_wasserstein needs equal-sized sets, got {tuple(x.shape)} and {tuple(y.shape)}")
    theta = torch.randn(projections, x.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    theta = theta / theta.norm(dim=1, keepdim=True)                              # (P, d) unit directions
    px, py = (x.double() @ theta.T).sort(0).values, (y.double() @ theta.T).sort(0).values   # (n, P)
    return float((px - py).abs().mean())


def distance(name: str, pts: torch.Tensor, metric: str = "energy") -> float:
    """`metric` between points pts (n, 2) and n fresh points of toy `name` (make_toy seed 1)."""
    ref = make_toy(name, pts.shape[0], seed=1)
    return energy_distance(pts, ref) if metric == "energy" else sliced_wasserstein(pts, ref)


def floor(name: str, n: int = 2000, pairs: int = 5, metric: str = "energy") -> tuple[float, float]:
    """Mean and standard deviation of `metric` between real sets (seed 1 against seeds 2 .. pairs + 1)."""
    vals = torch.tensor([distance(name, make_toy(name, n, seed=s), metric) for s in range(2, pairs + 2)])
    return float(vals.mean()), float(vals.std())
