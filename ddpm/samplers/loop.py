"""The reverse-process loop: any `model(x_t, t)` plus a step rule -> a stream of frames.

The loop knows nothing about networks or classes; `guided` turns a class-conditional network
into such a function (classifier-free guidance, Ho & Salimans 2022).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..schedules import Schedule, sampling_timesteps
from .ddim import ddim_step
from .ddpm import ddpm_step

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SAMPLERS = ("ddpm", "ddim")


@dataclass
class Frame:
    """One step of a reverse run: the state *after* the step from timestep t."""
    t: int                  # the timestep that was just denoised (its model call produced x0_pred)
    x_t: torch.Tensor       # the new state x_{t_prev}, same shape as the input
    x0_pred: torch.Tensor   # the network's estimate of x_0 at step t


def guided(model: torch.nn.Module, labels: torch.Tensor | None, guidance_scale: float = 1.0,
           interval: tuple[int, int] | None = None, negative_labels: torch.Tensor | None = None) -> ModelFn:
    """Wrap a class-conditional `model(x, t, labels)` as `fn(x, t)`.

    eps = eps_uncond + s (eps_cond - eps_uncond) (Ho & Salimans 2022, Eq. 6 with w = s - 1): s = 0 is
    unconditional, s = 1 plain conditional, s > 1 pushes samples towards what makes the class recognisable.
    s = 0 and s = 1 each need one pass of B; any other s runs the conditional and unconditional passes
    as one batch of 2B, which is faster than two calls of B.

    interval (t_lo, t_hi), for s > 1: push beyond the conditional model only while t_lo <= t <= t_hi,
    and use the plain conditional model (s = 1, one pass of B) elsewhere (Kynkäänniemi et al. 2024).
    At high noise guidance mostly drives every sample towards the same prototype (it costs
    diversity); at low noise it changes little. For s <= 1 (unconditional, a mix, plain conditional)
    there is no push to limit, and the classic formula holds at every step.

    negative_labels: a negative prompt, as Stable Diffusion has one. Its prediction takes the place of the
    unconditional one, eps = eps_neg + s (eps_pos - eps_neg): the sample is pushed towards the prompt *and
    away from* the negative prompt. Without a (positive) label it pushes away from the negative alone.
    """
    if negative_labels is not None and labels is None:
        labels = torch.full_like(negative_labels, -1)             # "anything but the negative prompt"
    if labels is None or guidance_scale == 0.0:
        return lambda x, t: model(x, t, labels=negative_labels)   # s = 0: the unconditional (or negative) pass alone
    uncond = negative_labels if negative_labels is not None else torch.full_like(labels, -1)   # -1: "no class"
    if guidance_scale == 1.0:
        return lambda x, t: model(x, t, labels=labels)
    if interval is None or guidance_scale < 1.0:
        interval = (float("-inf"), float("inf"))
    lo, hi = interval

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        inside = (t >= lo) & (t <= hi)                                            # (B,)
        if not inside.any():
            return model(x, t, labels=labels)
        out = model(torch.cat([x, x]), torch.cat([t, t]), labels=torch.cat([labels, uncond]))   # one batch of 2B
        eps_cond, eps_uncond = out.chunk(2)
        eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        if not inside.all():                                   # a batch that mixes timesteps
            eps = torch.where(inside.reshape(-1, *[1] * (x.dim() - 1)), eps, eps_cond)
        return eps
    return fn


def timesteps_for(sampler: str, steps: int, timesteps: int, start_t: int | None = None,
                  spacing: str = "linspace") -> list[int]:
    """The descending list of t a run visits. DDPM visits every t; DDIM `steps` of them.

    With `start_t` (start from a noised image), only t <= start_t are visited, and DDIM's
    step count shrinks in proportion so the step size stays the same.
    """
    T = timesteps if start_t is None else int(start_t) + 1
    if sampler == "ddpm":
        return list(range(T - 1, -1, -1))
    if sampler == "ddim":
        n = steps if start_t is None else max(1, round(steps * T / timesteps))
        return sampling_timesteps(min(n, T), T, spacing)
    raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")


@torch.inference_mode()
def sample_loop(model_fn: ModelFn, schedule: Schedule, x_T: torch.Tensor, ts: list[int], sampler: str = "ddim",
                eta: float = 0.0, variance: str = "fixed_small", prediction: str = "epsilon", clip: bool = True,
                generator: torch.Generator | None = None) -> Iterator[Frame]:
    """Run the reverse chain from x_T over the descending timesteps `ts`, yielding one Frame per step."""
    x = x_T                                                                      # (B, C, H, W) or (B, 2)
    for i, t in enumerate(ts):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)   # (B,)
        out = model_fn(x, t_batch)
        if sampler == "ddpm":
            x, x0 = ddpm_step(schedule, out, t, x, prediction=prediction, variance=variance,
                              clip=clip, generator=generator)
        else:
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            x, x0 = ddim_step(schedule, out, t, t_prev, x, eta=eta, prediction=prediction,
                              clip=clip, generator=generator)
        yield Frame(t=t, x_t=x, x0_pred=x0)
