"""The variational bound of Ho et al. 2020, Eq. 5, term by term, in bits per dimension.

    L = L_T + sum_{t>1} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || N(0, I))                    no parameters: the prior term
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))   Gaussians: closed form
    L_0     = -log p(x_0 | x_1)                               discretised Gaussian decoder (Sec. 3.3)

Dividing nats by D ln 2 (D = number of pixels) gives bits/dim, the unit of the paper's Table 2.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .forward import extract, q_mean_variance, q_sample
from .posterior import predict_x0, q_posterior
from .schedules import Schedule


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x0: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x0) elementwise, for x0 on the 256 pixel levels scaled to [-1, 1]: the Gaussian's mass
    in the bin [x - 1/255, x + 1/255], with the outermost bins stretched to +-infinity (Eq. 13)."""
    centered = x0 - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _std_normal_cdf(inv_std * (centered + 1.0 / 255))
    cdf_minus = _std_normal_cdf(inv_std * (centered - 1.0 / 255))
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()                       # x = -1: all mass below the bin's top
    log_one_minus_cdf_min = (1.0 - cdf_minus).clamp(min=1e-12).log()     # x = +1: all mass above the bin's bottom
    log_mid = (cdf_plus - cdf_minus).clamp(min=1e-12).log()
    return torch.where(x0 < -0.999, log_cdf_plus, torch.where(x0 > 0.999, log_one_minus_cdf_min, log_mid))


def _bits_per_dim(nats: torch.Tensor) -> torch.Tensor:
    """(B, ...) elementwise nats -> (B,) bits per dimension."""
    return nats.flatten(1).mean(1) / math.log(2.0)


@torch.inference_mode()
def vlb_terms(schedule: Schedule, model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor,
              timesteps: list[int] | None = None, prediction: str = "epsilon", variance: str = "fixed_small",
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The terms of Eq. 5 for a batch x0 (B, ...) in [-1, 1], each (B,) in bits/dim.

    Returns {"prior": L_T, "terms": (B, len(ts)) with L_{t-1} for each t in ts (t = 0 gives L_0),
    "t": the timesteps ts, "decoder": L_0 (if 0 in ts), "total": the bound (only if ts is all of 0..T-1)}.
    `timesteps` evaluates only some t (the bound is a sum, so a strided subset shows its shape cheaply).
    """
    T = schedule.timesteps
    ts = list(range(T)) if timesteps is None else sorted(int(t) for t in timesteps)
    B = x0.shape[0]
    # L_T: q(x_T | x_0) against the prior N(0, I)
    mean_T, var_T = q_mean_variance(schedule, x0, T - 1)
    prior = _bits_per_dim(normal_kl(mean_T, var_T.log().expand_as(x0), torch.zeros_like(x0), torch.zeros_like(x0)))
    terms = []
    for t in ts:
        dev = generator.device if generator is not None else x0.device
        noise = torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype).to(x0.device)
        x_t = q_sample(schedule, x0, t, noise)                                     # x_t ~ q(x_t | x_0)
        t_batch = torch.full((B,), t, dtype=torch.long, device=x0.device)
        x0_pred = predict_x0(schedule, model_fn(x_t, t_batch), x_t, t, prediction)
        model_mean, _, post_logvar = q_posterior(schedule, x0_pred, x_t, t)         # p's mean (Eq. 11)
        model_logvar = post_logvar if variance == "fixed_small" else \
            extract(torch.cat([schedule.posterior_variance[1:2], schedule.betas[1:]]).log(), t, x0)
        if t == 0:
            # L_0: decoder log-likelihood of the true pixels under p(x_0 | x_1)
            nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar.expand_as(x0))
            terms.append(_bits_per_dim(nll))
        else:
            true_mean, _, true_logvar = q_posterior(schedule, x0, x_t, t)
            kl = normal_kl(true_mean, true_logvar.expand_as(x0), model_mean, model_logvar.expand_as(x0))
            terms.append(_bits_per_dim(kl))
    out = {"prior": prior, "terms": torch.stack(terms, 1), "t": torch.tensor(ts)}
    if ts and ts[0] == 0:
        out["decoder"] = out["terms"][:, 0]
    if len(ts) == T:
        out["total"] = prior + out["terms"].sum(1)
    return out
