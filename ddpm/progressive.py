"""Progressive distillation (Salimans & Ho 2022, Algorithm 2): halve the number of sampling steps per round.

Each round, a student initialised from the teacher learns to do in ONE deterministic DDIM step what the
teacher does in TWO: from z_t, the teacher steps t -> t' -> t'' and the student t -> t''. Its target is the
x_0 for which one DDIM step lands exactly on the teacher's z_{t''} (Algorithm 2, with alpha = sqrt(abar),
sigma = sqrt(1 - abar)):

    x~ = (z_{t''} - (sigma_{t''} / sigma_t) z_t) / (alpha_{t''} - (sigma_{t''} / sigma_t) alpha_t)

and its loss is the truncated-SNR weighting of the x-space error, max(SNR_t, 1) ||x~ - x^||^2 (Sec. 4).
Then the student becomes the teacher: 64 -> 32 -> 16 -> 8 -> 4 steps.

Design decisions (and why):
- **v-prediction.** An eps-network's x^ = (z_t - sigma eps^) / alpha divides by alpha_999 = 0.0064, so at
  few steps the first step amplifies any error 150-fold (Sec. 4 of the paper). The student therefore
  predicts v (x^ = alpha z_t - sigma v^, no division). Round 0 *converts*: a v-student, initialised with
  the eps-teacher's weights, learns ONE teacher step per step (at the same N = 64; then x~ is just the
  teacher's clipped x_0 estimate); only then the halving rounds start.
- **Guidance distilled in.** The round-0 teacher is the default pipeline exactly: classifier-free guidance
  s = 3 while t <= 500 (its JSON's guidance interval), the plain conditional model above, DDIM with x_0
  clipped to [-1, 1]. The student learns that guided step in ONE conditional pass (Meng et al. 2023, at one
  fixed s), so the 4-step model costs 4 passes per image. A fraction `label_dropout` of each batch gets
  the "no class" label and the teacher's *unconditional* steps as targets, so "any class" still works.
  The model's JSON says `"guidance": "distilled"`: the pipeline must not apply s on top.
- **Trailing time grid.** The student's N steps are `sampling_timesteps(N, T, "trailing")` followed by
  the clean end t = -1: it starts at t = T-1, so the first step sees the real x_T noise level, and for
  N a power of two T/N is a dyadic fraction, so the N/2 grid is exactly every other point of the N grid
  (the teacher's midpoints t' are the points in between). 64 >= 50 keeps the first teacher as good as
  the DDIM-50 the model card measures.
- **Only grid timesteps are trained**: t is drawn from the student's own grid (Algorithm 2's t = i/N), and
  z_t = q_sample(x_0, t) from real images.
- **No clipping in the loss.** x^ and x~ are compared unclipped; the sampler clips x^ to [-1, 1] as for
  every other model (the final x~ is the teacher's clipped output, so it lies in [-1, 1] anyway).
- **The Trainer does the rest**: a round is a GaussianDiffusion whose loss is the distillation loss, so
  AdamW, warm-up and decay, gradient clipping, EMA, checkpoints and the exact resume (every random number
  of step s drawn from a generator seeded by (seed, s)) are `ddpm.trainer.Trainer`'s. The next teacher
  is the round's EMA, read back from its final checkpoint, so a resumed run is bit-identical.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checkpoint import load_checkpoint, load_diffusion, save_checkpoint, unprefixed
from .diffusion import GaussianDiffusion
from .forward import extract, q_sample
from .posterior import predict_x0
from .samplers import ddim_step, sample_loop
from .schedules import Schedule, sampling_timesteps
from .trainer import Trainer


# ---- the time grids ---------------------------------------------------------------------------------
def time_grid(steps: int, timesteps: int) -> list[int]:
    """The steps + 1 boundaries of an N-step run: trailing spacing from T-1 down, then -1 (the clean end)."""
    return sampling_timesteps(steps, timesteps, "trailing") + [-1]


def plan_rounds(steps_from: int, steps_to: int, convert: bool = True) -> list[tuple[int, int]]:
    """(teacher steps, student steps) per round: [(64, 64)] to convert to v, then (64, 32), ..., (8, 4)."""
    if steps_from < 1 or steps_to < 1 or steps_from & (steps_from - 1) or steps_to & (steps_to - 1):
        raise ValueError(f"steps must be powers of two, got {steps_from} and {steps_to}")
    if steps_to > steps_from:
        raise ValueError(f"--steps-to ({steps_to}) must not exceed --steps-from ({steps_from})")
    rounds = [(steps_from, steps_from)] if convert else []
    n = steps_from
    while n > steps_to:
        rounds.append((n, n // 2))
        n //= 2
    if not rounds:
        raise ValueError("nothing to do: --steps-to equals --steps-from and the conversion round is skipped")
    return rounds


# ---- the target of Algorithm 2 ----------------------------------------------------------------------
def alpha_sigma(schedule: Schedule, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t), each (B, 1, 1, 1); t = -1 gives (1, 0)."""
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    alpha = extract(torch.cat([one, schedule.sqrt_alphas_cumprod]), t + 1, x)
    sigma = extract(torch.cat([zero, schedule.sqrt_one_minus_alphas_cumprod]), t + 1, x)
    return alpha, sigma


def x0_target(schedule: Schedule, z_t: torch.Tensor, t: torch.Tensor, z_t2: torch.Tensor,
              t2: torch.Tensor) -> torch.Tensor:
    """x~ of Algorithm 2: the x_0 for which ONE DDIM step (eta = 0) from z_t at t lands on z_t2 at t2 < t."""
    a_t, s_t = alpha_sigma(schedule, t, z_t)                                     # (B, 1, 1, 1)
    a_2, s_2 = alpha_sigma(schedule, t2, z_t)
    ratio = s_2 / s_t
    return (z_t2 - ratio * z_t) / (a_2 - ratio * a_t)                            # (B, C, H, W)


@dataclass
class Teacher:
    """What a teacher predicts at (x_t, t, labels): one conditional pass, or, with guidance_scale,
    classifier-free guidance eps_u + s (eps_c - eps_u) where labels >= 0 and t lies in guidance_interval
    (exactly `samplers.guided` per item, but the unconditional pass runs only on the items that need it)."""

    model: nn.Module
    prediction: str                                     # "epsilon" or "v"
    guidance_scale: float | None = None                 # None: one conditional pass (guidance built in)
    guidance_interval: tuple[int, int] | None = None    # None: guide at every t

    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        out = self.model(x, t, labels=labels).float()                            # (B, C, H, W); label -1: p(x)
        if self.guidance_scale is None or labels is None:
            return out
        lo, hi = self.guidance_interval or (0, float("inf"))
        need = (labels >= 0) & (t >= lo) & (t <= hi)                             # (B,)
        if need.any():
            uncond = self.model(x[need], t[need], labels=torch.full_like(labels[need], -1)).float()
            out[need] = uncond + self.guidance_scale * (out[need] - uncond)    # Ho & Salimans 2022, Eq. 6
        return out


def load_teacher(stem: str | Path, guidance_scale: float,
                 device: str = "cpu") -> tuple[Teacher, GaussianDiffusion, dict]:
    """A checkpoint as the pipeline samples it: s = guidance_scale within its JSON's guidance interval, or, for a
    distilled model, its built-in guidance and nothing on top. Also returns its diffusion and its JSON config."""
    diff = load_diffusion(stem, device=device)
    config = json.loads(Path(str(stem) + ".json").read_text())
    sampling = config.get("sampling", {})
    iv = sampling.get("guidance_interval")
    built_in = sampling.get("guidance") == "distilled"
    teacher = Teacher(diff.model.eval().requires_grad_(False), diff.prediction, None if built_in else guidance_scale,
                      tuple(iv) if iv else None)
    return teacher, diff, config


# ---- one round as a loss the Trainer can drive ------------------------------------------------------
class ProgressiveDistillation(GaussianDiffusion):
    """A v-prediction student with `student_steps` DDIM steps, taught by `teacher` on `teacher_steps`
    (= student_steps: conversion to v; = 2 x student_steps: halving). Its config is the student's
    GaussianDiffusion config, so `load_diffusion(checkpoint)` rebuilds a sampler from any checkpoint. teacher=None:
    no online target (ddpm/chains.py reads its targets from recorded chains)."""

    def __init__(self, student: nn.Module, teacher: Teacher | None, teacher_steps: int, student_steps: int, *,
                 timesteps: int = 1000, beta_schedule: str = "linear", beta_start: float = 1e-4,
                 beta_end: float = 0.02, image_size: int = 28, channels: int = 1, label_dropout: float = 0.2):
        super().__init__(student, image_size=image_size, timesteps=timesteps, sampling_timesteps=student_steps,
                         beta_schedule=beta_schedule, objective="pred_v", beta_start=beta_start,
                         beta_end=beta_end, channels=channels, label_dropout=label_dropout)
        if teacher_steps not in (student_steps, 2 * student_steps):
            raise ValueError(f"a round keeps or halves the steps, got {teacher_steps} -> {student_steps}")
        self.k = teacher_steps // student_steps                                  # teacher steps per student step
        self.teacher_grid = time_grid(teacher_steps, timesteps)
        self.student_grid = self.teacher_grid[::self.k]
        assert self.student_grid == time_grid(student_steps, timesteps)         # the grids nest (docstring)
        self.teacher = teacher

    @torch.no_grad()
    def target(self, z_t: torch.Tensor, i: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """x~ for student step i: k deterministic DDIM steps of the teacher (float64 updates, x_0 clipped
        as the pipeline does), then the closed form x0_target."""
        grid = torch.tensor(self.teacher_grid, device=z_t.device)
        z = z_t.double()                                                         # (B, C, H, W)
        for j in range(self.k):
            ta, tb = grid[self.k * i + j], grid[self.k * i + j + 1]              # (B,), tb may be -1
            out = self.teacher(z.float(), ta, labels).double()
            z, _ = ddim_step(self.schedule, out, ta, tb, z, eta=0.0, prediction=self.teacher.prediction,
                             clip=True)                                          # Song et al. Eq. 12
        return x0_target(self.schedule, z_t.double(), grid[self.k * i], z, grid[self.k * i + self.k]).float()

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The distillation loss of a batch x in [0, 1] (Algorithm 2, one iteration of its inner loop)."""
        x0 = x * 2 - 1                                                           # (B, C, H, W) in [-1, 1]
        B, dev = x0.shape[0], x0.device
        gen_dev = generator.device if generator is not None else dev
        n = len(self.student_grid) - 1
        i = torch.randint(0, n, (B,), generator=generator, device=gen_dev).to(dev)    # student step index
        noise = torch.randn(x0.shape, generator=generator, device=gen_dev).to(dev)
        if labels is not None and self.label_dropout > 0:
            drop = torch.rand(B, generator=generator, device=gen_dev).to(dev) < self.label_dropout
            labels = torch.where(drop, torch.full_like(labels, -1), labels)    # -1 = "no class"
        t = torch.tensor(self.student_grid, device=dev)[i]                      # (B,)
        z_t = q_sample(self.schedule, x0, t, noise)                              # Eq. 4
        target = self.target(z_t, i, labels)                                     # x~, (B, C, H, W)
        v = self.model(z_t, t, labels=labels).float()
        x_hat = predict_x0(self.schedule, v, z_t, t, "v")                        # x^ = alpha z_t - sigma v^
        weight = extract(self.schedule.snr, t, x_hat).clamp(min=1.0).flatten()   # max(SNR, 1), (B,)
        return (weight * (x_hat - target).pow(2).flatten(1).mean(1)).mean()

    @torch.inference_mode()
    def sample(self, batch_size: int = 16, labels: torch.Tensor | None = None, guidance_scale: float = 1.0,
               return_all_timesteps: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """The student's own sampler: DDIM on its trailing grid, one conditional pass per step (guidance is
        built in, so guidance_scale is ignored). Returns (B, C, H, W) in [0, 1]."""
        dev = self.device
        gen_dev = generator.device if generator is not None else dev
        x = torch.randn((batch_size, *self.data_shape), generator=generator, device=gen_dev).to(dev)
        labels = None if labels is None else labels.to(dev)
        states = [x]
        for frame in sample_loop(lambda z, t: self.model(z, t, labels=labels), self.schedule, x,
                                 self.student_grid[:-1], "ddim", prediction="v", clip=True):
            states.append(frame.x_t)
        out = torch.stack(states, dim=1) if return_all_timesteps else states[-1]
        return (out.clamp(-1, 1) + 1) / 2


class DistillTrainer(Trainer):
    """The Trainer, with the round's sampling defaults and history written into every checkpoint's JSON
    (so `load_pretrained(checkpoint)` samples it with its own steps, spacing and built-in guidance)."""

    def __init__(self, *args, sampling: dict, progressive: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampling, self.progressive = sampling, progressive

    def config(self) -> dict:
        return {**super().config(), "sampling": self.sampling, "progressive": self.progressive}


def _finished(folder: Path, steps: int) -> bool:
    """Whether the round in `folder` has its final checkpoint (step == its number of steps)."""
    last = newest_checkpoint(folder)
    return last is not None and json.loads(Path(str(last) + ".json").read_text()).get("step") == steps


def newest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("model-*.json"))
    return found[-1].with_suffix("") if found else None


def export_final(checkpoint: Path, out: Path) -> None:
    """The shipped form (as ddpm.export writes it): EMA weights only, plus the config with its sampling section."""
    tensors, config = load_checkpoint(checkpoint)
    keep = {k: config[k] for k in ("model", "diffusion", "trainer", "step", "classes", "sampling", "progressive")
            if k in config}
    save_checkpoint(out, {f"ema.{k}": v for k, v in unprefixed("ema", tensors).items()}, keep)


# ---- the whole run: every round, resumable ----------------------------------------------------------
def distill(teacher: str, results_folder: str | Path, *, steps_from: int = 64, steps_to: int = 4,
            steps_per_round: list[int] | int = 2000, data="fashion-mnist", convert: bool = True,
            batch_size: int = 64, lr: float = 3e-4, warmup_steps: int = 100, lr_decay_fraction: float = 0.5,
            ema_decay: float = 0.999, label_dropout: float = 0.2, guidance_scale: float = 3.0,
            max_grad_norm: float = 1.0, save_every: int = 250, num_samples: int = 40, eval_n: int = 500,
            log_every: int = 25, seed: int = 0, device: str = "cpu", export: str | Path | None = None,
            max_steps: int | None = None, log: Callable[[str], None] = print) -> Path | None:
    """Run (or resume) every round; returns the exported final model's stem, or None if `max_steps`
    (optimiser steps in this call; for tests, a kill without a final save) stopped it first.

    Round r lives in results_folder/round-<r>-<N>-steps; finished rounds are skipped, the current one
    resumes from its newest checkpoint; rerunning the same command is the resume."""
    from .data import resolve_dataset
    from .pretrained import model_stem
    rounds = plan_rounds(steps_from, steps_to, convert)
    steps = [steps_per_round] * len(rounds) if isinstance(steps_per_round, int) else list(steps_per_round)
    if len(steps) != len(rounds):
        raise ValueError(f"{len(rounds)} rounds {rounds} need {len(rounds)} step counts, got {steps}")
    folder = Path(results_folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = model_stem(teacher)
    teach, t_diff, _ = load_teacher(stem, guidance_scale, device)
    iv = teach.guidance_interval
    cfg = t_diff.config
    dataset = resolve_dataset(data, cfg["image_size"], cfg["channels"])
    history, done_here = [], 0
    # the latest finished round makes the earlier ones unnecessary (its EMA is the next teacher), so a packed
    # state needs only that round's final checkpoint and the current round's newest one
    start = max([r for r in range(len(rounds)) if _finished(folder / f"round-{r}-{rounds[r][1]}-steps", steps[r])],
                default=-1)
    for r, (n_t, n_s) in enumerate(rounds):
        rdir = folder / f"round-{r}-{n_s}-steps"
        if r < start:
            continue
        if r == start:                                  # its checkpoint carries the history of the rounds before it
            history = json.loads(Path(str(newest_checkpoint(rdir)) + ".json").read_text())["progressive"]["history"]
        student = copy.deepcopy(teach.model).train().requires_grad_(True)    # initialised from the teacher
        diff = ProgressiveDistillation(student, teach, n_t, n_s, timesteps=cfg["timesteps"],
                                       beta_schedule=cfg["beta_schedule"], beta_start=cfg["beta_start"],
                                       beta_end=cfg["beta_end"], image_size=cfg["image_size"],
                                       channels=cfg["channels"], label_dropout=label_dropout)
        sampling = {"steps": n_s, "spacing": "trailing", "guidance": "distilled", "guidance_scale": guidance_scale,
                    "teacher_guidance_interval": list(iv) if iv else None,
                    "note": "guidance is built into the network (progressive distillation): one conditional pass "
                            "per step; labels=None or s = 0 is the unconditional model; do not apply s on top"}
        progressive = {"round": r, "teacher_steps": n_t, "student_steps": n_s, "teacher": str(teacher),
                       "rounds": rounds, "steps_per_round": steps, "history": history}
        tr = DistillTrainer(diff, dataset, train_batch_size=batch_size, train_lr=lr, train_num_steps=steps[r],
                            warmup_steps=warmup_steps, ema_decay=ema_decay, max_grad_norm=max_grad_norm,
                            save_and_sample_every=save_every, num_samples=num_samples, results_folder=str(rdir),
                            seed=seed * 100 + r, device=device, progress=False,
                            lr_decay_steps=int(steps[r] * lr_decay_fraction), sampling=sampling,
                            progressive=progressive)
        if tr.load():
            log(f"round {r}: resumed at step {tr.step} from {rdir}")
        done_here += train_round(tr, f"round {r} ({n_t} -> {n_s} steps)", log, log_every, save_every,
                                 None if max_steps is None else max_steps - done_here)
        if tr.step < tr.train_num_steps:
            return None                                                         # "killed": nothing saved
        final = newest_checkpoint(rdir)
        result = {"round": r, "teacher_steps": n_t, "student_steps": n_s, "train_steps": steps[r],
                  "checkpoint": str(final)}
        if eval_n:
            last = r == len(rounds) - 1                        # the unconditional row only for the final model
            result["eval"] = evaluate_round(final, n_s, eval_n, rdir / "eval.json", log,
                                            (True, False) if last else (True,))
        history.append(result)
        teach = Teacher(load_diffusion(final, device=device).model.requires_grad_(False), "v")   # the EMA
    out = Path(export) if export else folder / f"fashion-mnist-{steps_to}step"
    export_final(final, out)
    (folder / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    log(f"done: {out}.safetensors / .json")
    return out


def train_round(tr: Trainer, name: str, log: Callable[[str], None], log_every: int = 25, save_every: int = 250,
                max_steps: int | None = None) -> int:
    """Drive a round's Trainer to its last step, logging the mean loss, learning rate and speed every `log_every`
    steps and writing a checkpoint and sample grid every `save_every` and at the end. `max_steps` stops it after
    that many optimiser steps in this call (for tests: a kill without a final save). Returns the steps taken."""
    t0, s0, window = time.time(), tr.step, []
    while tr.step < tr.train_num_steps and (max_steps is None or tr.step - s0 < max_steps):
        window.append(tr.train_step())
        if tr.step % log_every == 0 or tr.step == tr.train_num_steps:
            log(f"{name} step {tr.step}/{tr.train_num_steps} loss {sum(window) / len(window):.5f} "
                f"lr {tr.lr_at(tr.step - 1):.2e} {(time.time() - t0) / (tr.step - s0):.2f} s/step")
            window = []
        if tr.step % save_every == 0 or tr.step == tr.train_num_steps:
            tr.save()
            tr.save_samples()
    return tr.step - s0


def evaluate_round(stem: Path, steps: int, n: int, cache: Path, log: Callable[[str], None],
                   kinds: tuple[bool, ...] = (True,)) -> list[dict]:
    """Fréchet distance and class agreement (ddpm.evaluate: same seeds, labels and floors as the model card)
    of a round's EMA at its own step count; cached in `cache`."""
    if cache.exists():
        return json.loads(cache.read_text())
    from .evaluate import evaluate
    rows = evaluate(str(stem), n=n, configs=[("ddim", steps)], kinds=kinds)
    cache.write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        log(f"  eval {row['sampler']} {'conditional' if row['conditional'] else 'unconditional'} n={row['n']}: "
            f"FD {row['fd']:.3f} (floor {row['floor']:.3f}), agreement {row.get('agreement', float('nan')):.1%}, "
            f"{row['seconds']:.0f} s")
    return rows
