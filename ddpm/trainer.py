"""Trainer: Algorithm 1 of Ho et al. in a loop, with EMA, checkpoints that resume exactly, and DDP.

Every random number of step s (batch order, t, eps, label dropout) is drawn from a generator seeded
with (seed, s, rank), so a run killed at step s and resumed from its checkpoint continues exactly as
if it had never stopped, and needs no saved random state.
"""
from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from .checkpoint import (
    load_checkpoint,
    model_config,
    optimizer_from_tensors,
    optimizer_to_tensors,
    prefixed,
    save_checkpoint,
    unprefixed,
)
from .data import get_batch, resolve_dataset
from .diffusion import GaussianDiffusion
from .images import save_grid


class Trainer:
    """Train `diffusion` on `folder_or_dataset` (a folder of images, "fashion-mnist" or its idx
    folder, or a torch Dataset). Names follow denoising-diffusion-pytorch's Trainer."""

    def __init__(self, diffusion: GaussianDiffusion, folder_or_dataset, *, train_batch_size: int = 64,
                 gradient_accumulate_every: int = 1, train_lr: float = 1e-3, train_num_steps: int = 10000,
                 warmup_steps: int = 200, ema_update_every: int = 1, ema_decay: float = 0.999,
                 adam_betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0,
                 max_grad_norm: float = 1.0, save_and_sample_every: int = 1000, num_samples: int = 50,
                 sample_guidance_scale: float = 3.0, results_folder: str = "./results", keep_checkpoints: int = 2,
                 seed: int = 0, device: str | None = None, progress: bool = True,
                 amp: bool = False, lr_decay_steps: int = 0, decode=None):
        self.world, self.rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device is None:
            device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.diffusion = diffusion.to(self.device)
        self.ema = copy.deepcopy(diffusion.model).eval().requires_grad_(False)
        self.ddp = (torch.nn.parallel.DistributedDataParallel(self.diffusion) if self.world > 1 else self.diffusion)
        self.dataset = resolve_dataset(folder_or_dataset, diffusion.image_size, diffusion.channels)
        self.opt = torch.optim.AdamW(diffusion.model.parameters(), lr=train_lr, betas=adam_betas,
                                     weight_decay=weight_decay)
        self.args = dict(train_batch_size=train_batch_size, gradient_accumulate_every=gradient_accumulate_every,
                         train_lr=train_lr, train_num_steps=train_num_steps, warmup_steps=warmup_steps,
                         ema_update_every=ema_update_every, ema_decay=ema_decay, adam_betas=list(adam_betas),
                         weight_decay=weight_decay, max_grad_norm=max_grad_norm, seed=seed, world_size=self.world,
                         amp=amp, lr_decay_steps=lr_decay_steps)
        # amp: the network runs in bfloat16 under autocast while the weights, the optimiser and the loss
        # stay float32 (bfloat16 keeps float32's exponent range, so no loss scaling is needed).
        # On a CPU with AVX-512 BF16 a step is ~1.7x faster; on recent GPUs more.
        self.amp, self.lr_decay_steps = amp, lr_decay_steps
        self.batch_size, self.accum, self.lr = train_batch_size, gradient_accumulate_every, train_lr
        self.train_num_steps, self.warmup_steps = train_num_steps, warmup_steps
        self.ema_update_every, self.ema_decay, self.max_grad_norm = ema_update_every, ema_decay, max_grad_norm
        self.save_and_sample_every, self.num_samples = save_and_sample_every, num_samples
        self.sample_guidance_scale, self.keep_checkpoints = sample_guidance_scale, keep_checkpoints
        self.results_folder, self.seed, self.progress = Path(results_folder), seed, progress
        self.step, self.loss_history = 0, []
        self.decode = decode        # latent diffusion: latents -> images for the sample grids (ddpm/latent.py)

    # ---- randomness and data: pure functions of (seed, step) --------------------------------------
    def _generator(self, step: int, micro: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(((self.seed * 1_000_003 + step) * 64 + micro) * 4096 + self.rank)
        return g

    def _indices(self, step: int, micro: int) -> torch.Tensor:
        """This rank's slice of the global batch: consecutive slices of per-epoch permutations."""
        n, per = len(self.dataset), self.batch_size
        start = ((step * self.accum + micro) * self.world + self.rank) * per
        out = []
        while len(out) < per:
            epoch, pos = divmod(start + len(out), n)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
            out.extend(perm[pos: pos + per - len(out)].tolist())
        return torch.tensor(out)

    def lr_at(self, step: int) -> float:
        """Linear warm-up (Adam's early steps are the unstable ones), then constant, then, over the last
        `lr_decay_steps` steps, a linear decay to 10 %: the cool-down that settles the weights before
        they are shipped ("warm-up, stable, decay"; training can go on later from any checkpoint)."""
        warm = min(1.0, (step + 1) / max(1, self.warmup_steps))
        left = self.train_num_steps - step
        decay = 1.0 if left >= self.lr_decay_steps else 0.1 + 0.9 * left / self.lr_decay_steps
        return self.lr * warm * decay

    # ---- the loop ---------------------------------------------------------------------------------
    def train_step(self) -> float:
        """One optimiser step (Algorithm 1), with gradient accumulation; returns the mean loss."""
        self.ddp.train()
        total = 0.0
        for micro in range(self.accum):
            x, labels = get_batch(self.dataset, self._indices(self.step, micro))
            x = x.to(self.device)
            labels = labels.to(self.device) if labels is not None and self.diffusion.model.config.get("num_classes") else None
            torch.manual_seed(self.seed + self.step)            # only dropout layers read the global RNG
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                loss = self.ddp(x, labels, generator=self._generator(self.step, micro)) / self.accum
            loss.backward()
            total += loss.item()
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.diffusion.model.parameters(), self.max_grad_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        if self.step % self.ema_update_every == 0:
            self._update_ema()
        self.loss_history.append(total)
        return total

    @torch.no_grad()
    def _update_ema(self) -> None:
        # EMA warm-up: early on the average would be dominated by the random init, so the decay
        # grows from ~0.1 towards ema_decay.
        decay = min(self.ema_decay, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema.parameters(), self.diffusion.model.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(self.ema.buffers(), self.diffusion.model.buffers()):
            e.copy_(b)

    def train(self) -> None:
        from tqdm.auto import tqdm
        bar = tqdm(total=self.train_num_steps, initial=self.step, disable=not self.progress or self.rank != 0,
                   dynamic_ncols=True)
        t0, s0 = time.time(), self.step
        while self.step < self.train_num_steps:
            loss = self.train_step()
            if self.rank == 0:
                bar.set_postfix(loss=f"{loss:.4f}", steps_per_s=f"{(self.step - s0) / (time.time() - t0):.2f}")
                bar.update(1)
                if self.step % self.save_and_sample_every == 0 or self.step == self.train_num_steps:
                    self.save()
                    self.save_samples()
        bar.close()

    # ---- checkpoints and samples ------------------------------------------------------------------
    def config(self) -> dict:
        return {"model": model_config(self.diffusion.model), "diffusion": self.diffusion.config,
                "trainer": self.args, "step": self.step, "classes": getattr(self.dataset, "classes", None), "optimizer": optimizer_to_tensors(self.opt)[1]}

    def save(self, stem: str | Path | None = None) -> Path:
        """Write model, EMA and optimizer state; keep the newest `keep_checkpoints` in results_folder."""
        stem = Path(stem) if stem else self.results_folder / f"model-{self.step:07d}"
        tensors = {**prefixed("model", self.diffusion.model.state_dict()),
                   **prefixed("ema", self.ema.state_dict()), **optimizer_to_tensors(self.opt)[0]}
        config = self.config()
        config["loss_history"] = self.loss_history[-2000:]
        save_checkpoint(stem, tensors, config)
        old = sorted(self.results_folder.glob("model-*.json"))[:-self.keep_checkpoints]
        for p in old:
            p.unlink()
            p.with_suffix(".safetensors").unlink(missing_ok=True)
        return stem

    def load(self, stem: str | Path | None = None) -> bool:
        """Resume from `stem`, or from the newest checkpoint in results_folder. False if none."""
        if stem is None:
            found = sorted(self.results_folder.glob("model-*.json"))
            if not found:
                return False
            stem = found[-1].with_suffix("")
        tensors, config = load_checkpoint(stem, self.device)
        self.diffusion.model.load_state_dict(unprefixed("model", tensors))
        self.ema.load_state_dict(unprefixed("ema", tensors))
        optimizer_from_tensors(self.opt, tensors, config["optimizer"])
        self.step, self.loss_history = config["step"], config.get("loss_history", [])
        return True

    @torch.no_grad()
    def save_samples(self) -> Path:
        """A grid from the EMA model: one row per class (guided) if class-conditional."""
        n_cls = self.diffusion.model.config.get("num_classes")
        n = self.num_samples
        labels = (torch.arange(n, device=self.device) // max(1, n // n_cls)).clamp(max=n_cls - 1) if n_cls else None
        live, self.diffusion.model = self.diffusion.model, self.ema
        try:
            imgs = self.diffusion.sample(n, labels=labels, guidance_scale=self.sample_guidance_scale,
                                         generator=torch.Generator(self.device).manual_seed(0))
        finally:
            self.diffusion.model = live
        if self.decode is not None:
            imgs = self.decode(imgs)                                  # (n, 4, 7, 7) latents -> (n, 1, 28, 28)
        path = self.results_folder / f"sample-{self.step:07d}.png"
        if imgs.dim() == 4:
            save_grid(path, imgs, nrow=max(1, n // n_cls) if n_cls else int(math.sqrt(n)), scale=2)
        return path
