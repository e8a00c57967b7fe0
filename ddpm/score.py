"""The score view of an ε-network: s_θ(x, t) ≈ ∇_x log q_t(x), and Tweedie's estimate of x_0.

Denoising score matching (Vincent 2011; Song & Ermon 2019): for x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε (Eq. 4 of Ho et al.
2020), the score of q(x_t | x_0) is −ε/√(1−ᾱ_t), and regressing onto it recovers the score of the marginal q_t.
Ho et al.'s L_simple regresses ε instead, so an ε-prediction network *is* a score estimator up to the factor
−1/√(1−ᾱ_t):

    s_θ(x, t) = −ε_θ(x, t) / √(1−ᾱ_t)                                   (Song et al. 2021, Eq. 23 / App. B)

Tweedie's formula (Robbins 1956; Efron 2011) turns the score into the posterior mean of the clean data:

    E[x_0 | x_t] = (x_t + (1−ᾱ_t) ∇ log q_t(x_t)) / √ᾱ_t

which, with ε = −√(1−ᾱ_t) s, is exactly Ho et al.'s x̂_0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t (`ddpm.predict_x0`).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .forward import as_timesteps, extract
from .schedules import Schedule


@torch.inference_mode()
def score(model: nn.Module, schedule: Schedule, x: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    """s_θ(x, t) = −ε_θ(x, t) / √(1−ᾱ_t) for an ε-prediction network `model(x, t, labels=None)`.

    x (B, ...) in the model's space, t an int or (B,) -> (B, ...), the estimated ∇_x log q_t(x)."""
    t_batch = as_timesteps(t, x.shape[0], x.device)                          # (B,)
    eps = model(x, t_batch, labels=None).float()                              # (B, ...) ε_θ(x, t)
    return -eps / extract(schedule.sqrt_one_minus_alphas_cumprod, t_batch, eps)


def score_field(model: nn.Module, schedule: Schedule, ts: Sequence[int], lim: float, n_grid: int) -> dict:
    """The learned score on an n_grid × n_grid grid over [−lim, lim]² at every t in ts, in one network call.

    -> {"grid": (G, 2) points (G = n_grid², row-major, y the slow index), "ts": list of ints,
        "scores": (len(ts), G, 2), "n_grid": n_grid, "lim": lim}."""
    ts = [int(t) for t in ts]
    dev = next(model.parameters()).device
    axis = torch.linspace(-lim, lim, n_grid)                                  # (n_grid,)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)                   # (G, 2)
    G = grid.shape[0]
    x = grid.repeat(len(ts), 1).to(dev)                                       # (len(ts) * G, 2)
    t = torch.tensor(ts, dtype=torch.long, device=dev).repeat_interleave(G)   # (len(ts) * G,)
    s = score(model, schedule, x, t).cpu().reshape(len(ts), G, 2)            # (len(ts), G, 2)
    return {"grid": grid, "ts": ts, "scores": s, "n_grid": n_grid, "lim": float(lim)}


def tweedie_x0(schedule: Schedule, x_t: torch.Tensor, score: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    """Tweedie's formula: E[x_0 | x_t] = (x_t + (1−ᾱ_t) s) / √ᾱ_t for a score s ≈ ∇ log q_t(x_t); shaped like x_t.

    With s = −ε/√(1−ᾱ_t) this is `predict_x0(schedule, ε, x_t, t)` (Ho et al. 2020, Eq. 15)."""
    var = extract(1.0 - schedule.alphas_cumprod, t, x_t)                      # (B, 1, ...) 1 − ᾱ_t
    return (x_t + var * score) / extract(schedule.sqrt_alphas_cumprod, t, x_t)
