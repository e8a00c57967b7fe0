"""The forward (noising) process q(x_t | x_0) of Ho et al. 2020."""
from __future__ import annotations

import torch

from .schedules import Schedule


def as_timesteps(t: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """An int or a (B,) tensor of timesteps -> a (B,) long tensor on `device`."""
    if isinstance(t, torch.Tensor):
        t = t.to(device=device, dtype=torch.long).reshape(-1)
        return t.expand(batch) if t.numel() == 1 else t
    return torch.full((batch,), int(t), dtype=torch.long, device=device)


def extract(table: torch.Tensor, t: int | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """table[t] for each batch item, shaped (B, 1, 1, ...) to broadcast against x, in x's dtype.

    A t outside [0, T-1] is an error rather than a silent wrap-around (Python's table[-1]).
    """
    t = as_timesteps(t, x.shape[0], x.device)                           # (B,)
    if (t < 0).any() or (t >= table.shape[0]).any():
        raise IndexError(f"timestep out of range [0, {table.shape[0] - 1}]: {t.tolist()}")
    out = table.to(x.device)[t].to(x.dtype)                             # (B,)
    return out.reshape(-1, *([1] * (x.dim() - 1)))                      # (B, 1, ..., 1)


def q_sample(schedule: Schedule, x0: torch.Tensor, t: int | torch.Tensor,
             noise: torch.Tensor) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0) in one step (Eq. 4): sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
    return (extract(schedule.sqrt_alphas_cumprod, t, x0) * x0
            + extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * noise)


def q_mean_variance(schedule: Schedule, x0: torch.Tensor,
                    t: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_t | x_0) (Eq. 4), broadcast to x0's shape / (B, 1, ...)."""
    mean = extract(schedule.sqrt_alphas_cumprod, t, x0) * x0
    var = extract(1.0 - schedule.alphas_cumprod, t, x0)
    return mean, var
