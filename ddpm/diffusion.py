"""GaussianDiffusion: a network plus a schedule = the training loss and a sampler.

Parameter names follow the reference packages (denoising-diffusion-pytorch and its MindSpore
port), so that their tutorials read the same here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .forward import extract, q_sample
from .posterior import v_target
from .samplers import guided, sample_loop, timesteps_for
from .schedules import make_schedule

OBJECTIVES = {"pred_noise": "epsilon", "pred_x0": "x0", "pred_v": "v"}


class GaussianDiffusion(nn.Module):
    """Wraps `model(x_t, t, labels=None)`.

    image_size: side of the square images (ignored for 2-D points, use `data_shape`);
    timesteps: T of the forward process; sampling_timesteps: model calls when sampling
    (< timesteps means DDIM, Song et al. 2021); objective: what the network predicts
    ("pred_noise" as in Ho et al., "pred_x0" or "pred_v"); label_dropout: probability of
    replacing a class label by "no class" while training, for classifier-free guidance;
    min_snr_gamma: if set, weight each t's loss by min(SNR, gamma) / SNR (Hang et al. 2023),
    which trains faster than the uniform weighting of L_simple (Eq. 14);
    teacher: if given, a trained network with the same schedule and objective whose prediction
    replaces the sampled target (knowledge distillation): a small student regresses onto the
    teacher's E[eps | x_t] instead of onto one noisy draw of eps, which converges in fewer steps.
    """

    def __init__(self, model: nn.Module, image_size: int = 28, timesteps: int = 1000,
                 sampling_timesteps: int | None = None, beta_schedule: str = "linear",
                 objective: str = "pred_noise", beta_start: float = 1e-4, beta_end: float = 0.02,
                 channels: int = 1, data_shape: tuple[int, ...] | None = None, label_dropout: float = 0.1,
                 min_snr_gamma: float | None = None, ddim_sampling_eta: float = 0.0, auto_normalize: bool = True,
                 teacher: nn.Module | None = None):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
        self.model = model
        self.image_size, self.channels = image_size, channels
        self.data_shape = tuple(data_shape) if data_shape else (channels, image_size, image_size)
        self.schedule = make_schedule(beta_schedule, timesteps, beta_start, beta_end)
        self.num_timesteps = timesteps
        self.sampling_timesteps = sampling_timesteps or timesteps
        self.objective, self.prediction = objective, OBJECTIVES[objective]
        self.label_dropout, self.min_snr_gamma = label_dropout, min_snr_gamma
        self.ddim_sampling_eta, self.auto_normalize = ddim_sampling_eta, auto_normalize
        # a tuple hides the teacher from nn.Module: not trained, not saved in the student's checkpoints
        self._teacher = (teacher.eval().requires_grad_(False),) if teacher is not None else ()
        self.config = dict(image_size=image_size, timesteps=timesteps, sampling_timesteps=self.sampling_timesteps,
                           beta_schedule=beta_schedule, objective=objective, beta_start=beta_start,
                           beta_end=beta_end, channels=channels, data_shape=list(self.data_shape),
                           label_dropout=label_dropout, min_snr_gamma=min_snr_gamma,
                           ddim_sampling_eta=ddim_sampling_eta, auto_normalize=auto_normalize)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The training loss for a batch of data x (images in [0, 1] if auto_normalize)."""
        x0 = x * 2 - 1 if self.auto_normalize else x                            # (B, C, H, W) in [-1, 1]
        B, dev = x0.shape[0], x0.device
        gen_dev = generator.device if generator is not None else dev
        # Algorithm 1: t ~ Uniform({1..T}) (0-based here), eps ~ N(0, I)
        t = torch.randint(0, self.num_timesteps, (B,), generator=generator, device=gen_dev).to(dev)
        noise = torch.randn(x0.shape, generator=generator, device=gen_dev).to(dev)
        if labels is not None and self.label_dropout > 0:
            drop = torch.rand(B, generator=generator, device=gen_dev).to(dev) < self.label_dropout
            labels = torch.where(drop, torch.full_like(labels, -1), labels)     # -1 = "no class"
        x_t = q_sample(self.schedule, x0, t, noise)                              # Eq. 4
        out = self.model(x_t, t, labels=labels).float()                         # float32 loss even under autocast
        if self._teacher:
            with torch.no_grad():
                target = self._teacher[0](x_t, t, labels=labels).float()        # the teacher's prediction
        else:
            target = {"epsilon": noise, "x0": x0, "v": v_target(self.schedule, x0, noise, t)}[self.prediction]
        loss = F.mse_loss(out, target, reduction="none").flatten(1).mean(1)      # (B,): Eq. 14 per item
        if self.min_snr_gamma:
            snr = extract(self.schedule.snr, t, loss)                            # (B,)
            # weights that make every objective equal to min(SNR, gamma)-weighted x0 error
            w = {"epsilon": snr.clamp(max=self.min_snr_gamma) / snr,
                 "x0": snr.clamp(max=self.min_snr_gamma),
                 "v": snr.clamp(max=self.min_snr_gamma) / (snr + 1)}[self.prediction]
            loss = loss * w
        return loss.mean()

    @torch.inference_mode()
    def sample(self, batch_size: int = 16, labels: torch.Tensor | None = None, guidance_scale: float = 1.0,
               return_all_timesteps: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw samples: DDIM with `sampling_timesteps` steps if fewer than T, else DDPM.

        Returns (B, *data_shape), in [0, 1] if auto_normalize; with return_all_timesteps,
        (B, S + 1, *data_shape) holding x_T and every intermediate state.
        """
        dev = self.device
        gen_dev = generator.device if generator is not None else dev
        x = torch.randn((batch_size, *self.data_shape), generator=generator, device=gen_dev).to(dev)
        sampler = "ddim" if self.sampling_timesteps < self.num_timesteps else "ddpm"
        ts = timesteps_for(sampler, self.sampling_timesteps, self.num_timesteps)
        fn = guided(self.model, None if labels is None else labels.to(dev), guidance_scale)
        states = [x]
        for frame in sample_loop(fn, self.schedule, x, ts, sampler, eta=self.ddim_sampling_eta,
                                 prediction=self.prediction, clip=self.auto_normalize, generator=generator):
            states.append(frame.x_t)
        out = torch.stack(states, dim=1) if return_all_timesteps else states[-1]
        return (out.clamp(-1, 1) + 1) / 2 if self.auto_normalize else out
