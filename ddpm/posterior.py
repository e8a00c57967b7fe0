"""The forward-process posterior q(x_{t-1} | x_t, x_0) and the conversions between what a
network can predict (noise eps, the clean image x_0, or the velocity v) and x_0."""
from __future__ import annotations

import torch

from .forward import extract
from .schedules import Schedule

PREDICTIONS = ("epsilon", "x0", "v")


def q_posterior(schedule: Schedule, x0: torch.Tensor, x_t: torch.Tensor,
                t: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (Eq. 6-7).

    mean is x0-shaped; variance and log_variance are (B, 1, ..., 1) and broadcast.
    """
    mean = (extract(schedule.posterior_mean_coef1, t, x_t) * x0
            + extract(schedule.posterior_mean_coef2, t, x_t) * x_t)        # Eq. 7, mu-tilde
    variance = extract(schedule.posterior_variance, t, x_t)                # Eq. 7, beta-tilde
    log_variance = extract(schedule.posterior_log_variance_clipped, t, x_t)
    return mean, variance, log_variance


def predict_x0(schedule: Schedule, model_output: torch.Tensor, x_t: torch.Tensor,
               t: int | torch.Tensor, prediction: str = "epsilon") -> torch.Tensor:
    """The x_0 implied by a network's output at step t.

    - "epsilon": invert Eq. 4, x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)   (Eq. 15 of Ho et al.)
    - "x0":      the output is x_0 itself
    - "v":       v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho 2022), so
                 x_0 = sqrt(abar) x_t - sqrt(1 - abar) v
    """
    a = extract(schedule.sqrt_alphas_cumprod, t, x_t)
    s = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x_t)
    if prediction == "epsilon":
        return (x_t - s * model_output) / a
    if prediction == "x0":
        return model_output
    if prediction == "v":
        return a * x_t - s * model_output
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")


def predict_eps(schedule: Schedule, x0: torch.Tensor, x_t: torch.Tensor,
                t: int | torch.Tensor) -> torch.Tensor:
    """The noise eps for which Eq. 4 maps x0 to x_t: eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar)."""
    return ((x_t - extract(schedule.sqrt_alphas_cumprod, t, x_t) * x0)
            / extract(schedule.sqrt_one_minus_alphas_cumprod, t, x_t))


def v_target(schedule: Schedule, x0: torch.Tensor, noise: torch.Tensor,
             t: int | torch.Tensor) -> torch.Tensor:
    """The velocity v = sqrt(abar) eps - sqrt(1 - abar) x_0 a v-prediction network learns."""
    return (extract(schedule.sqrt_alphas_cumprod, t, x0) * noise
            - extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * x0)
