"""One step of DDIM (Song, Meng & Ermon 2021, Eq. 12), x_t -> x_{t_prev} with t_prev < t."""
from __future__ import annotations

import torch

from ..forward import extract
from ..posterior import predict_eps, predict_x0
from ..schedules import Schedule
from .ddpm import randn_like


def ddim_step(schedule: Schedule, model_output: torch.Tensor, t: int | torch.Tensor, t_prev: int | torch.Tensor,
              x_t: torch.Tensor, eta: float = 0.0, noise: torch.Tensor | None = None, prediction: str = "epsilon",
              clip: bool = True, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x_prev, x0_pred). `t_prev = -1` means the clean end, where alpha-bar = 1.

    eta = 0 is the deterministic DDIM; eta = 1 with t_prev = t - 1 is exactly DDPM's
    "fixed_small" ancestral step. Any t_prev < t works, which is what lets DDIM sample
    with fewer steps than the T used for training.
    """
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    abar_t = extract(schedule.alphas_cumprod, t, x_t)                              # (B, 1, 1, 1)
    # alpha-bar with a 1 prepended, so that index t_prev + 1 = 0 reads alpha-bar_{-1} = 1.
    abar_padded = torch.cat([torch.ones(1, dtype=schedule.alphas_cumprod.dtype), schedule.alphas_cumprod])
    t_prev_idx = (t_prev + 1) if isinstance(t_prev, torch.Tensor) else int(t_prev) + 1
    abar_prev = extract(abar_padded, t_prev_idx, x_t)                              # (B, 1, 1, 1)

    # "predicted x_0", the first term of Eq. 12; eps is re-derived from the (clipped) x_0 so
    # that the two stay consistent (as in the reference implementation).
    x0_pred = predict_x0(schedule, model_output, x_t, t, prediction)
    if clip:
        x0_pred = x0_pred.clamp(-1.0, 1.0)
    eps = predict_eps(schedule, x0_pred, x_t, t)

    # Eq. 16: sigma_t(eta)^2 = eta^2 (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)
    sigma2 = eta ** 2 * (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)
    # Eq. 12: x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z
    dir_xt = (1 - abar_prev - sigma2).clamp(min=0).sqrt() * eps                  # "direction pointing to x_t"
    x_prev = abar_prev.sqrt() * x0_pred + dir_xt
    if eta > 0:
        if noise is None:
            noise = randn_like(x_t, generator)
        x_prev = x_prev + sigma2.sqrt() * noise                                    # "random noise"
    return x_prev, x0_pred
