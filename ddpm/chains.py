"""A last round after progressive distillation: fine-tune the N-step student on its FIRST teacher's own chains.

Why. Progressive distillation (ddpm/progressive.py) teaches each student by the previous student, so the errors
of every round are inherited by the next: 64 -> 4 steps took five rounds, and each added 0.2-0.6 to the
Fréchet distance (model card). The first teacher, DDIM-64 of the default model with its guidance, is the one
that is actually good. This round goes back to it: run it once from N(0, I) noise for many seeds, record its
state z at the student's grid points (t = 999, 749, 499, 249 and the clean end for 4 steps), and train the
student so that ONE of its DDIM steps from each recorded z lands on the next recorded z. That is the direct
distillation of Luhman & Luhman (2021), done as a fine-tune of the progressive student (which is already a
good 4-step model, so the jumps of 250 timesteps need not be learnt from scratch).

Per student step i the target is Algorithm 2's x~ (Salimans & Ho 2022), with the teacher's k = 64 / N steps
folded in:

    x~_i = (z_{i+1} - (sigma_{i+1} / sigma_i) z_i) / (alpha_{i+1} - (sigma_{i+1} / sigma_i) alpha_i)

and the loss is the error of the step's landing point, ||z^_{i+1} - z_{i+1}||^2 = c_i^2 ||x^ - x~||^2 with
c_i = alpha_{i+1} - (sigma_{i+1} / sigma_i) alpha_i ("state" weighting), not Algorithm 2's max(SNR, 1) ||x^ - x~||^2
("snr"). Why: at 4 steps max(SNR, 1) is 1 at t = 999, 749 and 499, so the first jump, whose x~ divides the teacher's
z_749 by c_0 = 0.05, has by far the largest x-error (0.026 against 0.004-0.008) and steers the gradient, although
an error there moves z_749 by only 5 % of it. Weighted by c_i^2 (0.003, 0.05, 0.28, 1) each step counts by what it
does to the chain. Measured on the same 3,000 chains and 1,500 steps: FD 1.41 with "snr", 1.02 with "state"
(model card).

Since the chains are recorded once, a training step costs only the student's own pass: the teacher's 64 x 1.5
passes per chain are paid up front (one chain gives a pair for every student step) and reused for every epoch.

The chains start from noise, not from noised training images: these are exactly the states the sampler
visits, so there is nothing to mismatch at t = 999 (where q_sample of an image is 0.6 % image anyway).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch

from .checkpoint import load_checkpoint, load_diffusion, save_checkpoint
from .data import TensorImageDataset
from .forward import extract
from .posterior import predict_x0
from .progressive import (DistillTrainer, ProgressiveDistillation, Teacher, alpha_sigma, evaluate_round, export_final,
                          load_teacher, newest_checkpoint, time_grid, train_round, x0_target)
from .samplers import ddim_step


# ---- the teacher's chains -----------------------------------------------------------------------------
@torch.no_grad()
def teacher_chains(teacher: Teacher, schedule, teacher_steps: int, student_steps: int, labels: torch.Tensor,
                   generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Run the teacher's deterministic DDIM (eta = 0, x_0 clipped, float64 updates, as ProgressiveDistillation.target)
    from N(0, I) for each label (-1: no class); return its states at the student's grid points,
    (B, student_steps + 1, *shape): z_{T-1}, ..., and the clean x_0 last."""
    grid = time_grid(teacher_steps, schedule.timesteps)               # [999, ..., -1]
    k = teacher_steps // student_steps
    if teacher_steps % student_steps or grid[::k] != time_grid(student_steps, schedule.timesteps):
        raise ValueError(f"the {student_steps}-step grid is not every k-th point of the {teacher_steps}-step grid "
                         f"(T = {schedule.timesteps}); use powers of two")
    B = labels.shape[0]
    z = torch.randn((B, *shape), generator=generator).double()              # (B, C, H, W)
    states = [z.float()]
    for j in range(teacher_steps):
        ta = torch.full((B,), grid[j], dtype=torch.long)
        tb = torch.full((B,), grid[j + 1], dtype=torch.long)
        out = teacher(z.float(), ta, labels).double()
        z, _ = ddim_step(schedule, out, ta, tb, z, eta=0.0, prediction=teacher.prediction, clip=True)  # Song Eq. 12
        if (j + 1) % k == 0:
            states.append(z.float())
    return torch.stack(states, dim=1)                                        # (B, N + 1, C, H, W)


def record_chains(teacher_stem: str | Path, folder: str | Path, n: int, *, teacher_steps: int = 64,
                  student_steps: int = 4, guidance_scale: float = 3.0, label_dropout: float = 0.2,
                  chunk: int = 500, seed: int = 0, log: Callable[[str], None] = print) -> TensorImageDataset:
    """n chains of the teacher, sampled as its pipeline does (load_teacher), recorded in chunks of `chunk`
    as folder/chains-<c>.safetensors, so an interrupted recording resumes at the next missing chunk. A
    fraction label_dropout of the chains is unconditional (label -1), as the rounds' label dropout."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    teacher, diff, config = load_teacher(teacher_stem, guidance_scale)
    chains, labels = [], []
    for c in range((n + chunk - 1) // chunk):
        path = folder / f"chains-{c:03d}"
        if not Path(str(path) + ".json").exists():
            g = torch.Generator().manual_seed(seed * 100_003 + c)            # chunk c is a pure function of (seed, c)
            m = min(chunk, n - c * chunk)
            y = torch.randint(0, diff.model.config["num_classes"], (m,), generator=g)
            y = torch.where(torch.rand(m, generator=g) < label_dropout, torch.full_like(y, -1), y)
            t0 = time.time()
            x = teacher_chains(teacher, diff.schedule, teacher_steps, student_steps, y, g, diff.data_shape)
            iv = teacher.guidance_interval
            save_checkpoint(path, {"chains": x, "labels": y},
                            {"teacher": str(teacher_stem), "teacher_steps": teacher_steps,
                             "student_steps": student_steps, "guidance_scale": teacher.guidance_scale,
                             "guidance_interval": list(iv) if iv else None, "seed": seed, "chunk": c})
            log(f"recorded chains {c * chunk + m}/{n}: {time.time() - t0:.0f} s for {m}")
        else:
            tensors, _ = load_checkpoint(path)
            x, y = tensors["chains"], tensors["labels"]
        chains.append(x)
        labels.append(y)
    return TensorImageDataset(torch.cat(chains), torch.cat(labels), config.get("classes"))


# ---- the round: one student step per recorded pair ----------------------------------------------------
class ChainDistillation(ProgressiveDistillation):
    """The student of `student_steps` steps, trained on recorded chains: a batch x is (B, N + 1, C, H, W), the
    teacher's states at the student's grid points; each item trains one student step i, drawn at random."""

    def __init__(self, student, student_steps: int, weighting: str = "state", **kwargs):
        super().__init__(student, None, student_steps, student_steps, **kwargs)
        if weighting not in ("snr", "state"):
            raise ValueError(f"weighting must be 'snr' or 'state', got {weighting!r}")
        self.weighting = weighting

    def chain_target(self, chains: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """x~ for student step i of each chain (B, N + 1, C, H, W): the x_0 for which one DDIM step from the
        recorded z_i lands on the recorded z_{i+1} (x0_target, Algorithm 2)."""
        grid = torch.tensor(self.student_grid, device=chains.device)
        rows = torch.arange(chains.shape[0], device=chains.device)
        return x0_target(self.schedule, chains[rows, i].double(), grid[i], chains[rows, i + 1].double(),
                         grid[i + 1]).float()                                   # (B, C, H, W)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        B, dev = x.shape[0], x.device
        gen_dev = generator.device if generator is not None else dev
        grid = torch.tensor(self.student_grid, device=dev)
        i = torch.randint(0, len(grid) - 1, (B,), generator=generator, device=gen_dev).to(dev)   # student step index
        z_t = x[torch.arange(B, device=dev), i]                                  # (B, C, H, W)
        t, t2 = grid[i], grid[i + 1]                                             # (B,), t2 may be -1
        target = self.chain_target(x, i)                                         # x~
        v = self.model(z_t, t, labels=labels).float()
        x_hat = predict_x0(self.schedule, v, z_t, t, "v")                        # x^ = alpha z_t - sigma v^
        if self.weighting == "snr":
            weight = extract(self.schedule.snr, t, x_hat).clamp(min=1.0).flatten()   # max(SNR, 1), (B,)
        else:       # the error of the landing point: z^_{i+1} - z_{i+1} = (a_2 - (s_2/s_t) a_t) (x^ - x~)
            a_t, s_t = alpha_sigma(self.schedule, t, x_hat)
            a_2, s_2 = alpha_sigma(self.schedule, t2, x_hat)
            weight = (a_2 - s_2 / s_t * a_t).pow(2).flatten().float()            # (B,)
        return (weight * (x_hat - target).pow(2).flatten(1).mean(1)).mean()


def distill_on_chains(student_stem: str | Path, teacher_stem: str | Path, results_folder: str | Path, *,
                      n_chains: int = 10_000, teacher_steps: int = 64, chunk: int = 500, weighting: str = "state",
                      train_steps: int = 4000, batch_size: int = 64, lr: float = 3e-4,
                      warmup_steps: int = 100, lr_decay_fraction: float = 0.5, ema_decay: float = 0.999,
                      max_grad_norm: float = 1.0, save_every: int = 250, eval_n: int = 500, seed: int = 0,
                      export: str | Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Record the chains (resumable), fine-tune the student on them (resumable), evaluate, export. Student and
    teacher: a shipped name or a checkpoint stem (the teacher is recorded in the JSON as given)."""
    from .pretrained import model_stem
    folder = Path(results_folder)
    teacher, student_stem, teacher_stem = str(teacher_stem), model_stem(student_stem), model_stem(teacher_stem)
    s_config = json.loads(Path(str(student_stem) + ".json").read_text())
    steps = s_config["sampling"]["steps"]
    chains = record_chains(teacher_stem, folder / "chains", n_chains, teacher_steps=teacher_steps,
                           student_steps=steps, chunk=chunk, seed=seed,
                           guidance_scale=s_config["sampling"]["guidance_scale"], log=log)
    student = load_diffusion(student_stem).model.train().requires_grad_(True)    # the EMA of the last round
    d = s_config["diffusion"]
    diff = ChainDistillation(student, steps, weighting, timesteps=d["timesteps"], beta_schedule=d["beta_schedule"],
                             beta_start=d["beta_start"], beta_end=d["beta_end"], image_size=d["image_size"],
                             channels=d["channels"], label_dropout=0.0)
    progressive = {**s_config.get("progressive", {}),
                   "chains": {"teacher": teacher, "teacher_steps": teacher_steps, "n": len(chains),
                              "train_steps": train_steps, "lr": lr, "weighting": weighting}}
    rdir = folder / "round-chains"
    tr = DistillTrainer(diff, chains, train_batch_size=batch_size, train_lr=lr, train_num_steps=train_steps,
                        warmup_steps=warmup_steps, ema_decay=ema_decay, max_grad_norm=max_grad_norm,
                        save_and_sample_every=save_every, num_samples=40, results_folder=str(rdir),
                        seed=seed * 100 + 99, device="cpu", progress=False,
                        lr_decay_steps=int(train_steps * lr_decay_fraction), sampling=s_config["sampling"],
                        progressive=progressive)
    if tr.load():
        log(f"chains round: resumed at step {tr.step}")
    train_round(tr, "chains round", log, save_every=save_every)
    final = newest_checkpoint(rdir)
    if eval_n:
        evaluate_round(final, steps, eval_n, rdir / "eval.json", log, (True, False))
    out = Path(export) if export else folder / f"fashion-mnist-{steps}step"
    export_final(final, out)
    log(f"done: {out}.safetensors / .json")
    return out


# ---- command line: python -m ddpm distill-chains ------------------------------------------------------
def add_parser(sub) -> None:
    import argparse
    p = sub.add_parser("distill-chains", help="a last round: fine-tune a progressively distilled student on its "
                       "first teacher's recorded DDIM chains; rerun the same command to resume",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--student", required=True, help="the final student of `distill` (a stem or shipped name)")
    p.add_argument("--teacher", default="fashion-mnist", help="the FIRST teacher of `distill` (its guidance interval)")
    p.add_argument("--teacher-steps", type=int, default=64, help="the teacher's DDIM steps (as distill --steps-from)")
    p.add_argument("--n-chains", type=int, default=10_000, help="teacher chains to record (from N(0, I) noise)")
    p.add_argument("--chunk", type=int, default=500, help="chains per recorded file (the unit of resume)")
    p.add_argument("--train-steps", type=int, default=4000, help="optimiser steps of the fine-tune")
    p.add_argument("--batch-size", type=int, default=64, help="chains per optimiser step (one student step each)")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate after warm-up")
    p.add_argument("--weighting", choices=("state", "snr"), default="state",
                   help="loss weight per student step: the landing point's error (state) or max(SNR, 1) (snr)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay (the exported weights)")
    p.add_argument("--results-folder", default="results/chains", help="chains, checkpoints, grids, eval")
    p.add_argument("--export", default=None, help="stem of the final model; default RESULTS/fashion-mnist-<N>step")
    p.add_argument("--eval-n", type=int, default=500, help="samples for the Fréchet distance (0 = none)")
    p.add_argument("--seed", type=int, default=0, help="seeds the recorded noise, labels and training")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=_cmd)


def _cmd(a) -> None:
    if a.threads:
        torch.set_num_threads(a.threads)
    distill_on_chains(a.student, a.teacher, a.results_folder, n_chains=a.n_chains,
                      teacher_steps=a.teacher_steps, chunk=a.chunk, weighting=a.weighting, train_steps=a.train_steps,
                      batch_size=a.batch_size, lr=a.lr, ema_decay=a.ema_decay, eval_n=a.eval_n, seed=a.seed,
                      export=a.export, log=lambda msg: print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True))
