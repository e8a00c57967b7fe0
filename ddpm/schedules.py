"""Noise schedules: the betas of the forward process and every quantity derived from them.

Everything is computed once, in float64, and stored on a `Schedule`. The samplers and the
losses only ever *index* these tables; no formula below is re-derived anywhere else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

SCHEDULES = ("linear", "cosine", "quadratic", "sigmoid", "sigmoid_abar")
# kinds defined by their alpha-bar curve alone, which ignore beta_start / beta_end
ABAR_SCHEDULES = ("cosine", "sigmoid_abar")


@dataclass(frozen=True)
class Schedule:
    """1-D float64 tensors of length T, indexed by t = 0..T-1 (t = 0 is the paper's step 1)."""

    kind: str
    betas: torch.Tensor                           # beta_t
    alphas: torch.Tensor                          # alpha_t = 1 - beta_t
    alphas_cumprod: torch.Tensor                  # alpha-bar_t = prod_{s<=t} alpha_s
    alphas_cumprod_prev: torch.Tensor             # alpha-bar_{t-1}, with alpha-bar_{-1} = 1
    sqrt_alphas_cumprod: torch.Tensor             # coefficient of x_0 in q(x_t | x_0), Eq. 4
    sqrt_one_minus_alphas_cumprod: torch.Tensor   # its standard deviation, Eq. 4
    posterior_variance: torch.Tensor              # beta-tilde_t, Eq. 7
    posterior_log_variance_clipped: torch.Tensor  # log beta-tilde_t, with t=0 taken from t=1 (beta-tilde_0 = 0)
    posterior_mean_coef1: torch.Tensor            # coefficient of x_0 in mu-tilde_t, Eq. 7
    posterior_mean_coef2: torch.Tensor            # coefficient of x_t in mu-tilde_t, Eq. 7
    snr: torch.Tensor                             # signal-to-noise ratio alpha-bar_t / (1 - alpha-bar_t)

    @property
    def timesteps(self) -> int:
        return self.betas.shape[0]

    def to(self, device: torch.device | str) -> "Schedule":
        """The same schedule with every table moved to `device` (still float64)."""
        return Schedule(**{f.name: (getattr(self, f.name).to(device) if f.name != "kind" else self.kind)
                           for f in fields(self)})


def _betas(kind: str, T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    f64 = torch.float64
    if kind == "linear":
        # Ho et al. 2020, Sec. 4: betas rise linearly from 1e-4 to 0.02 over T = 1000.
        return torch.linspace(beta_start, beta_end, T, dtype=f64)
    if kind == "quadratic":
        return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=f64) ** 2
    if kind == "sigmoid":
        # GeoDiff (Xu et al. 2022), as in diffusers' beta_schedule="sigmoid": the betas follow a sigmoid
        # over [-6, 6], scaled into [beta_start, beta_end] without renormalising, so beta_1 is a little
        # above beta_start (by 0.25 % of the range) and beta_T a little below beta_end.
        return torch.sigmoid(torch.linspace(-6, 6, T, dtype=f64)) * (beta_end - beta_start) + beta_start
    if kind == "cosine":
        # Nichol & Dhariwal 2021, Eq. 17: alpha-bar follows cos^2, which destroys information
        # more gently at the start; beta_t = 1 - alpha-bar_t / alpha-bar_{t-1}, clipped at 0.999
        # so the last steps do not become singular.
        s = 0.008
        steps = torch.arange(T + 1, dtype=f64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    if kind == "sigmoid_abar":
        # Jabri et al. 2022 (RIN), the `sigmoid_beta_schedule` of denoising-diffusion-pytorch: here it is
        # alpha-bar, not beta, that follows a (falling) sigmoid of t/T over [start, end] = [-3, 3], tau = 1,
        # normalised so that alpha-bar starts at 1; the same clip at 0.999 as the cosine schedule.
        start, end, tau = -3.0, 3.0, 1.0
        steps = torch.arange(T + 1, dtype=f64) / T
        sigmoid = lambda v: 1 / (1 + math.exp(-v))                                  # noqa: E731
        v_start, v_end = sigmoid(start / tau), sigmoid(end / tau)
        abar = (v_end - torch.sigmoid((steps * (end - start) + start) / tau)) / (v_end - v_start)
        abar = abar / abar[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


def make_schedule(kind: str = "linear", timesteps: int = 1000,
                  beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """Build a `Schedule` of `timesteps` steps. `beta_start`/`beta_end` are ignored by the kinds in
    ABAR_SCHEDULES ("cosine", "sigmoid_abar"), which define alpha-bar directly."""
    T = int(timesteps)
    if T < 2:
        raise ValueError(f"timesteps must be at least 2, got {timesteps}")
    if kind not in ABAR_SCHEDULES:
        if not (0.0 < beta_start < 1.0 and 0.0 < beta_end < 1.0):
            raise ValueError(f"betas must lie in (0, 1), got beta_start={beta_start}, beta_end={beta_end}")
        if beta_start > beta_end:
            raise ValueError(f"beta_start ({beta_start}) must not exceed beta_end ({beta_end})")
    betas = _betas(kind, T, float(beta_start), float(beta_end))                    # (T,)
    alphas = 1.0 - betas
    abar = torch.cumprod(alphas, dim=0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    # Eq. 7: beta-tilde_t = (1 - abar_{t-1}) / (1 - abar_t) * beta_t
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    return Schedule(
        kind=kind,
        betas=betas,
        alphas=alphas,
        alphas_cumprod=abar,
        alphas_cumprod_prev=abar_prev,
        sqrt_alphas_cumprod=abar.sqrt(),
        sqrt_one_minus_alphas_cumprod=(1.0 - abar).sqrt(),
        posterior_variance=post_var,
        # beta-tilde_0 = 0, whose log is -inf: borrow t=1's value, as the reference code does.
        posterior_log_variance_clipped=torch.log(torch.cat([post_var[1:2], post_var[1:]])),
        # Eq. 7: mu-tilde_t = coef1 * x_0 + coef2 * x_t
        posterior_mean_coef1=betas * abar_prev.sqrt() / (1.0 - abar),
        posterior_mean_coef2=(1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar),
        snr=abar / (1.0 - abar),
    )


def sampling_timesteps(steps: int, timesteps: int, spacing: str = "linspace") -> list[int]:
    """The descending timesteps visited when sampling with `steps` <= `timesteps` model calls.

    The three spacings of diffusers' schedulers (named in Lin et al. 2024, Table 2), computed as diffusers
    computes them, in numpy float64, so that both visit the same t:
    - "linspace": round(linspace(0, T-1, S)), both ends included (diffusers' DDIMScheduler default).
    - "leading":  0, k, 2k, ..., (S-1)k with k = T // S: the stride of the DDIM authors' code and Stable
      Diffusion's default. It never visits T-1, so the first call treats pure noise as a less noisy x_t.
    - "trailing": round(T - i T/S) - 1 for i = 0..S-1: always starts at the noisiest step T-1.
    One step visits T-1 whatever the spacing: a run that starts from x_T ~ N(0, I) must first call the
    network at the noisiest step (linspace and leading would give [0]: one call at t = 0 on pure noise).
    """
    steps, T = int(steps), int(timesteps)
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and timesteps={T}, got {steps}")
    if spacing not in ("linspace", "leading", "trailing"):
        raise ValueError(f"unknown spacing {spacing!r}; choose linspace, leading or trailing")
    if steps == 1:
        return [T - 1]
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, steps).round()[::-1]
    elif spacing == "leading":
        ts = (np.arange(steps) * (T // steps))[::-1]
    else:
        # exactly diffusers' np.arange(T, 0, -T/S); float rounding makes it one element too long for some
        # S (e.g. S = 61 at T = 1000, whose extra last element is t = -1), so keep the first S.
        ts = (np.round(np.arange(T, 0, -T / steps)) - 1)[:steps]
    return [int(t) for t in ts]
