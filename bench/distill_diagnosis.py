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
from ddpm.pretrained import model_stem                          # noqa: E402
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
    target = ddim_step(schedule, teacher(z, tt, labels), tt, tt, z, prediction=teacher.prediction)[1]   # clipped x_0
    x_hat = predict_x0(schedule, student(z, tt, labels=labels).float(), z, tt, "v")
    return (schedule.snr[t].clamp(min=1) * (x_hat - target).pow(2).flatten(1).mean(1)).mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("student", help="a round-0 checkpoint stem (results/.../round-0-64-steps/model-NNNNNNN)")
    ap.add_argument("--teacher", default="fashion-mnist")
    ap.add_argument("--n", type=int, default=500)
    a = ap.parse_args()
    torch.set_num_threads(1)
    t_diff = load_diffusion(model_stem(a.teacher))
    schedule = t_diff.schedule
    teacher = Teacher(t_diff.model.eval(), t_diff.prediction, 3.0, (0, 500))    # the app's default sampler
    student = load_diffusion(a.student).model.eval()
    grid = time_grid(64, schedule.timesteps)
    clf = load_classifier()
    test_x, _ = load_fashion_mnist(split="test")
    test_f = features(clf, test_x.float() / 255)
    labels = torch.arange(a.n) % 10
    x_T = torch.randn(a.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    print("1. mixed chains (64 trailing DDIM steps, s = 3 while t <= 500)")
    print("| the student takes the steps | Fréchet distance | class agreement |\n|---|---|---|")
    for name, at in (("none (the teacher alone)", lambda t: False), ("all", lambda t: True),
                     ("t > 500 (unguided)", lambda t: t > 500), ("t <= 500 (guided)", lambda t: t <= 500)):
        t0 = time.time()
        imgs = chain(teacher, student, schedule, grid, x_T, labels, at)
        with torch.no_grad():
            agree = (clf(imgs).argmax(1) == labels).float().mean().item()
        fd = frechet_distance(features(clf, imgs), test_f)
        print(f"| {name} | {fd:.3f} | {agree:.1%} |  ({time.time() - t0:.0f} s)", flush=True)

    print("\n2. the student's loss on the teacher's own trajectory and on noised training images (200 of each)")
    print("| t | on the trajectory | on noised training images |\n|---|---|---|")
    m = 200
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
        with torch.no_grad():
            z = ddim_step(schedule, teacher(z, tt, lab), tt, torch.full_like(tt, t_next), z, prediction=teacher.prediction)[0]


if __name__ == "__main__":
    main()
