"""A small KL-regularised autoencoder for latent diffusion (Rombach et al. 2022, Sec. 3.1 and Appendix G).

Stable Diffusion does not diffuse pixels. A VAE first squeezes a 512x512x3 image into a 64x64x4 latent
(downsampling factor f = 8); the diffusion model works there, and the decoder turns its result back into pixels.
Here the same idea at Fashion-MNIST's size: 28x28x1 (784 numbers) -> 7x7x4 (196 numbers), f = 4.

    encoder E: x (B, 1, 28, 28) in [0, 1]  ->  mean, logvar (B, 4, 7, 7): the posterior q(z | x) = N(mean, var)
    decoder D: z (B, 4, 7, 7)              ->  x_hat (B, 1, 28, 28) in [0, 1]
    loss = ||x - D(z)||^2  +  kl_weight * KL(q(z | x) || N(0, I)),      z = mean + std * eps (reparametrised)

Why KL and not a plain autoencoder: without a pull towards N(0, I) the latent can drift to any scale and
corners that the decoder never saw; the small KL weight (Rombach et al. use 1e-6; a "slight" regularisation)
keeps it compact without blurring the reconstructions. Why not a VQ model (their other choice): the KL latent
is continuous, which is what Gaussian diffusion assumes, and it is the variant Stable Diffusion ships.

After training, the latents are scaled by 1 / std of the training latents (`scale_factor`, Stable Diffusion's
0.18215 is the same number for its VAE), so that the diffusion model sees data of unit variance, as DDPM's
schedules assume.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import (load_checkpoint, optimizer_from_tensors, optimizer_to_tensors, prefixed, save_checkpoint,
                         unprefixed)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """Conv 3x3 + GroupNorm + SiLU: the unit both halves are built from."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class Autoencoder(nn.Module):
    """E and D above. `channels` is the width at 28x28; it doubles at 14x14 and 7x7 is the latent's home."""

    def __init__(self, latent_channels: int = 4, channels: int = 32, kl_weight: float = 1e-4):
        super().__init__()
        self.config = dict(latent_channels=latent_channels, channels=channels, kl_weight=kl_weight)
        c, c2 = channels, 2 * channels
        self.encoder = nn.Sequential(
            _block(1, c),                                                   # (B, c, 28, 28)
            nn.Conv2d(c, c2, 4, stride=2, padding=1), _block(c2, c2),       # (B, 2c, 14, 14)
            nn.Conv2d(c2, c2, 4, stride=2, padding=1), _block(c2, c2),      # (B, 2c, 7, 7)
            nn.Conv2d(c2, 2 * latent_channels, 1))                          # (B, 2 * 4, 7, 7): mean, logvar
        self.decoder = nn.Sequential(
            _block(latent_channels, c2), _block(c2, c2),                    # (B, 2c, 7, 7)
            nn.Upsample(scale_factor=2, mode="nearest"), _block(c2, c2),   # (B, 2c, 14, 14)
            nn.Upsample(scale_factor=2, mode="nearest"), _block(c2, c),    # (B, c, 28, 28)
            nn.Conv2d(c, 1, 3, padding=1))                                  # (B, 1, 28, 28): logits of x_hat
        self.latent_channels, self.kl_weight = latent_channels, kl_weight

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, 28, 28) in [0, 1] -> the posterior's mean and log-variance, each (B, 4, 7, 7)."""
        mean, logvar = self.encoder(x * 2 - 1).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)                              # as Rombach et al.: no overflow

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, 4, 7, 7) (unscaled) -> x_hat (B, 1, 28, 28) in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The training loss of a batch x (B, 1, 28, 28) in [0, 1], and its two parts (per image, summed)."""
        mean, logvar = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device)
        z = mean + (0.5 * logvar).exp() * eps                               # reparametrisation trick
        rec = (self.decode(z) - x).pow(2).flatten(1).sum(1).mean()          # squared error per image
        # KL(N(mean, var) || N(0, I)) = 1/2 sum(mean^2 + var - 1 - log var)   (Kingma & Welling 2014, App. B)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()
        return {"loss": rec + self.kl_weight * kl, "rec": rec, "kl": kl}


@torch.no_grad()
def latent_std(ae: Autoencoder, images: torch.Tensor, batch: int = 1000) -> float:
    """std of the posterior means over `images` (N, 1, 28, 28) in [0, 1]: 1 / this is the scale factor."""
    means = torch.cat([ae.encode(images[i:i + batch].float())[0] for i in range(0, len(images), batch)])
    return means.std().item()


def load_autoencoder(stem: str | Path, device: str | torch.device = "cpu") -> tuple[Autoencoder, dict]:
    """An Autoencoder with its trained (EMA) weights, and its JSON config (holding `scale_factor`)."""
    tensors, config = load_checkpoint(stem, device)
    ae = Autoencoder(**config["model"]).to(device)
    prefix = "ema" if any(k.startswith("ema.") for k in tensors) else "model"
    ae.load_state_dict(unprefixed(prefix, tensors))
    return ae.eval().requires_grad_(False), config


def train_autoencoder(results_folder: str | Path, images: torch.Tensor, *, steps: int = 6000, batch_size: int = 64,
                      lr: float = 1e-3, warmup_steps: int = 200, channels: int = 32, latent_channels: int = 4,
                      kl_weight: float = 1e-4, ema_decay: float = 0.999, save_every: int = 500, seed: int = 0,
                      log: Callable[[str], None] = print) -> Path:
    """Train on `images` (N, 1, 28, 28) uint8 or [0, 1]; checkpoints in results_folder, resumed if present.

    Every random draw of step s comes from a generator seeded with (seed, s), so a resumed run continues
    exactly. At the end, writes results_folder/autoencoder.{safetensors,json} with the EMA weights and
    the scale factor 1 / std of the training latents. Returns that stem.
    """
    folder = Path(results_folder)
    x_all = images.float() / 255 if not images.is_floating_point() else images
    ae = Autoencoder(latent_channels, channels, kl_weight)
    ema = Autoencoder(latent_channels, channels, kl_weight).requires_grad_(False)
    ema.load_state_dict(ae.state_dict())
    opt = torch.optim.AdamW(ae.parameters(), lr=lr, betas=(0.9, 0.99))
    step, found = 0, sorted(folder.glob("ae-*.json"))
    if found:                                                           # resume from the newest checkpoint
        tensors, cfg = load_checkpoint(found[-1].with_suffix(""))
        ae.load_state_dict(unprefixed("model", tensors))
        ema.load_state_dict(unprefixed("ema", tensors))
        optimizer_from_tensors(opt, tensors, cfg["optimizer"])
        step = cfg["step"]
        log(f"resumed from step {step}")
    t0 = time.time()
    while step < steps:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(0, len(x_all), (batch_size,), generator=g)
        # lr: linear warm-up, then cosine decay to 10 % (the last steps settle the weights)
        warm = min(1.0, (step + 1) / warmup_steps)
        for group in opt.param_groups:
            group["lr"] = lr * warm * (0.55 + 0.45 * torch.cos(torch.tensor(step / steps * torch.pi)).item())
        ae.train()
        out = ae(x_all[idx], generator=g)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        step += 1
        with torch.no_grad():
            for e, p in zip(ema.parameters(), ae.parameters()):
                e.lerp_(p, 1 - min(ema_decay, (1 + step) / (10 + step)))
        if step % 100 == 0:
            log(f"autoencoder step {step}/{steps} rec {out['rec'].item():.3f} kl {out['kl'].item():.1f} "
                f"{(time.time() - t0) / 100:.2f} s/step")
            t0 = time.time()
        if step % save_every == 0 or step == steps:
            _save(folder / f"ae-{step:07d}", ae, ema, opt, step)
            for old in sorted(folder.glob("ae-*.json"))[:-2]:
                old.unlink()
                old.with_suffix(".safetensors").unlink(missing_ok=True)
    std = latent_std(ema.eval(), x_all[:20000])
    out = folder / "autoencoder"
    save_checkpoint(out, prefixed("ema", ema.state_dict()),
                    {"model": ema.config, "scale_factor": 1.0 / std, "latent_shape": [latent_channels, 7, 7],
                     "step": step, "train": dict(steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                                                 ema_decay=ema_decay)})
    log(f"latent std {std:.4f} -> scale factor {1 / std:.4f}; wrote {out}")
    return out


def _save(stem: Path, ae: Autoencoder, ema: Autoencoder, opt: torch.optim.Optimizer, step: int) -> None:
    optim_tensors, optim_meta = optimizer_to_tensors(opt)
    save_checkpoint(stem, {**prefixed("model", ae.state_dict()), **prefixed("ema", ema.state_dict()), **optim_tensors},
                    {"model": ae.config, "step": step, "optimizer": optim_meta})
