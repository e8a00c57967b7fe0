"""One ancestral step of DDPM (Ho et al. 2020, Algorithm 2), x_t -> x_{t-1}."""
from __future__ import annotations

import torch

from ..forward import as_timesteps, extract
from ..posterior import predict_x0, q_posterior
from ..schedules import Schedule

VARIANCES = ("fixed_small", "fixed_large")


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like x, drawn from `generator` (on its own device) if given."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def ddpm_step(schedule: Schedule, model_output: torch.Tensor, t: int | torch.Tensor, x_t: torch.Tensor,
              noise: torch.Tensor | None = None, prediction: str = "epsilon", variance: str = "fixed_small",
              clip: bool = True, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample x_{t-1} ~ p(x_{t-1} | x_t) and return (x_prev, x0_pred).

    The model's mean is the true posterior mean with x_0 replaced by the network's estimate
    (Eq. 7 with x_0 := x0_pred; for epsilon-prediction without clipping this is exactly Eq. 11).
    `variance` picks sigma_t^2: "fixed_small" = beta-tilde_t (Eq. 7), "fixed_large" = beta_t;
    the paper (Sec. 3.2) reports both give similar samples.
    """
    # x_0 implied by the network output (Eq. 15 for epsilon); clipping to the data range [-1, 1]
    # keeps early, very noisy estimates from throwing the chain off.
    x0_pred = predict_x0(schedule, model_output, x_t, t, prediction)     # (B, C, H, W)
    if clip:
        x0_pred = x0_pred.clamp(-1.0, 1.0)
    mean, post_var, _ = q_posterior(schedule, x0_pred, x_t, t)         # Eq. 7: mu-tilde(x_t, x0_pred)
    if variance == "fixed_small":
        var = post_var                                                   # sigma_t^2 = beta-tilde_t
    elif variance == "fixed_large":
        var = extract(schedule.betas, t, x_t)                            # sigma_t^2 = beta_t
    else:
        raise ValueError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}")
    if noise is None:
        noise = randn_like(x_t, generator)
    # Algorithm 2, line 3: z = 0 at the last step, so x_0 is the mean itself.
    nonzero = (as_timesteps(t, x_t.shape[0], x_t.device) > 0).to(x_t.dtype)
    nonzero = nonzero.reshape(-1, *([1] * (x_t.dim() - 1)))              # (B, 1, 1, 1)
    x_prev = mean + nonzero * var.sqrt() * noise                         # Algorithm 2, line 4
    return x_prev, x0_pred
