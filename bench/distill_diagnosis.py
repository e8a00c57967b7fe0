"""Where does progressive distillation lose its quality? Two measurements on a conversion-round student
(ddpm/progressive.py, round 0: a v-student taught ONE guided DDIM step of the eps-teacher per step, 64 steps).

1. Mixed chains: the teacher's 64-step DDIM chain (s = 3 while t <= 500, x_0 clipped), with the student taking
   the steps in one range of t. The Fréchet distance of each chain says which steps cost the quality.
2. The student's loss (Algorithm 2's max(SNR, 1)-weighted x-error against the teacher's clipped x_0) on the
   teacher's own trajectory beside the same loss on noised training images at the same t: if the student were
   only bad off the training distribution (exposure bias), the first would be much larger.

    python bench/distill_diagnosis.py results/progressive/round-0-64-steps/model-0001000

Numbers, not a test; the model card quotes them. n = 500 conditional samples (labels 0..9 in turn), as the
project's metric (ddpm.evaluate) draws them; one thread, about 6 minutes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddpm.checkpoint import load_diffusion                      # noqa: E402
from ddpm.data import load_fashion_mnist                        # noqa: E402
from ddpm.evaluate import features, frechet_distance, load_classifier   # noqa: E402
from ddpm.forward import q_sample                               # noqa: E402
from ddpm.posterior import predict_x0                           # noqa: E402
from ddpm.pretrained import load_pretrained                     # noqa: E402
from ddpm.progressive import Teacher, time_grid                 # noqa: E402
from ddpm.samplers.ddim import ddim_step                        # noqa: E402


@torch.no_grad()
def chain(teacher: Teacher, student: torch.nn.Module, schedule, grid: list[int], x_T: torch.Tensor,
          labels: torch.Tensor, student_at) -> torch.Tensor:
    """DDIM (eta = 0, x_0 clipped) over `grid`; the student's v where student_at(t), else the guided teacher's eps.
    -> (n, 1, 28, 28) in [0, 1]."""
    z = x_T
    for t, t_next in zip(grid[:-1], grid[1:]):
        out = []
        for i in range(0, len(z), 250):                                       # chunks of 250 images
            zz, ll = z[i:i + 250], labels[i:i + 250]
            tt = torch.full((len(zz),), t)
            if student_at(t):
                pred, prediction = student(zz, tt, labels=ll).float(), "v"
            else:
                pred, prediction = teacher(zz, tt, ll), teacher.prediction
            out.append(ddim_step(schedule, pred, tt, torch.full_like(tt, t_next), zz, prediction=prediction)[0])
        z = torch.cat(out)
    return (z.clamp(-1, 1) + 1) / 2


@torch.no_grad()
def step_loss(teacher: Teacher, student: torch.nn.Module, schedule, z: torch.Tensor, t: int,
              labels: torch.Tensor) -> float:
    """Algorithm 2's loss of a conversion round at one t: max(SNR_t, 1) ||x^_student - clip(x^_teacher)||^2."""
    tt = torch.full((len(z),), t)
    target = predict_x0(schedule, teacher(z, tt, labels), z, tt, teacher.prediction).clamp(-1, 1)    # (B, C, H, W)
    x_hat = predict_x0(schedule, student(z, tt, labels=labels).float(), z, tt, "v")
    return (schedule.snr[t].clamp(min=1) * (x_hat - target).pow(2).flatten(1).mean(1)).mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("student", help="a round-0 checkpoint stem (results/.../round-0-64-steps/model-NNNNNNN)")
    ap.add_argument("--teacher", default="fashion-mnist")
    ap.add_argument("--n", type=int, default=500)
    a = ap.parse_args()
    m = 200                                                                  # images of part 2
    if a.n < m:
        ap.error(f"--n must be at least {m}: part 2 follows the first {m} of the chains' starting noises")
    torch.set_num_threads(1)
    pipe = load_pretrained(a.teacher, device="cpu")
    schedule = pipe.schedule
    teacher = Teacher(pipe.model, pipe.prediction, 3.0, pipe.guidance_interval)   # as the app samples it
    student = load_diffusion(a.student).model.eval()
    grid = time_grid(64, schedule.timesteps)
    clf = load_classifier()
    test_x, _ = load_fashion_mnist(split="test")
    test_f = features(clf, test_x.float() / 255)
    labels = torch.arange(a.n) % 10
    x_T = torch.randn(a.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    print(f"1. mixed chains (64 trailing DDIM steps, s = 3 while t in {pipe.guidance_interval or 'every t'})")
    print("| the student takes the steps | Fréchet distance | class agreement |\n|---|---|---|")
    hi = (pipe.guidance_interval or (0, schedule.timesteps - 1))[1]            # the teacher guides while t <= hi
    for name, at in (("none (the teacher alone)", lambda t: False), ("all", lambda t: True),
                     (f"t > {hi} (unguided)", lambda t: t > hi), (f"t <= {hi} (guided)", lambda t: t <= hi)):
        t0 = time.time()
        imgs = chain(teacher, student, schedule, grid, x_T, labels, at)
        with torch.no_grad():
            agree = (clf(imgs).argmax(1) == labels).float().mean().item()
        fd = frechet_distance(features(clf, imgs), test_f)
        print(f"| {name} | {fd:.3f} | {agree:.1%} |  ({time.time() - t0:.0f} s)", flush=True)

    print(f"\n2. the student's loss on the teacher's own trajectory and on noised training images ({m} of each)")
    print("| t | on the trajectory | on noised training images |\n|---|---|---|")
    x, y = load_fashion_mnist(split="train")
    real = torch.cat([x[y == c][: m // 10] for c in range(10)]).float() / 255 * 2 - 1     # (m, 1, 28, 28)
    real_labels = torch.arange(10).repeat_interleave(m // 10)
    z, lab = x_T[:m], labels[:m]
    for t, t_next in zip(grid[:-1], grid[1:]):
        if t in (999, 749, 515, 499, 374, 249, 124, 15):
            noise = torch.randn(real.shape, generator=torch.Generator().manual_seed(t))
            zr = q_sample(schedule, real, torch.full((m,), t), noise)                 # Eq. 4
            print(f"| {t} | {step_loss(teacher, student, schedule, z, t, lab):.4f} | "
                  f"{step_loss(teacher, student, schedule, zr, t, real_labels):.4f} |", flush=True)
        tt = torch.full((m,), t)
        with torch.no_grad():                                                   # the teacher's step along its chain
            z = ddim_step(schedule, teacher(z, tt, lab), tt, torch.full_like(tt, t_next), z,
                          prediction=teacher.prediction)[0]


if __name__ == "__main__":
    main()
