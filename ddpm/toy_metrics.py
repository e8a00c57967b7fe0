"""Sample quality against the number of steps on the 2-D toys: `python -m ddpm.toy_metrics` measures the energy
distance and the sliced Wasserstein distance (ddpm/distances.py) for DDPM, DDIM (with and without the fixes for
the terminal-SNR problem) and flow matching on every shipped toy, from the same seeds.

    python -m ddpm.toy_metrics --out results/flow            # steps.json, steps.md, steps.png

Every distance is measured between 2,000 samples and 2,000 fresh real points (make_toy seed 1; the models were
trained on seed 0). Two sets of real points (seeds 1 and 2, 3, ...) give the "floor": what a perfect sampler
would score with this many points.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from torch import nn

from .distances import distance, floor
from .posterior import predict_eps, predict_x0
from .schedules import Schedule
from .toy import TOYS, make_toy


# ---- the terminal-SNR fix: clip x0_pred to the data's range ---------------------------------------------
class ClipX0(nn.Module):
    """An eps-network whose implied x_0 (Ho et al. Eq. 15) is clamped to the box [lo, hi] (per coordinate):
    it returns the eps that gives back the clamped x_0 (Eq. 4 solved for eps). This is what ddpm_step and
    ddim_step do with clip=True, whose box is the images' [-1, 1]; the toys need their own, so they sample with
    clip=False and this wrapper around the network."""

    def __init__(self, model: nn.Module, schedule: Schedule, lo: torch.Tensor, hi: torch.Tensor):
        super().__init__()
        self.model, self.schedule, self.lo, self.hi = model, schedule, lo, hi

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        eps = self.model(x, t, labels=labels)                                      # (B, 2)
        x0 = predict_x0(self.schedule, eps, x, t).clamp(self.lo, self.hi)          # Eq. 15, then clamp
        return predict_eps(self.schedule, x0, x, t)                                # (B, 2)


def data_box(name: str, margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The bounding box (lo (2,), hi (2,)) of the toy's 10,000 training points, widened by `margin`."""
    x = make_toy(name, 10000, seed=0)
    return x.min(0).values - margin, x.max(0).values + margin


# ---- the sweep ------------------------------------------------------------------------------------------
# name -> (sampler, eta, spacing, clip); sampler "ddim" with eta = 1 is DDPM's ancestral step on the sub-sequence
# (Song et al. Eq. 16: with all T steps it is exactly Algorithm 2 with sigma^2 = beta-tilde)
METHODS = {
    "ddpm": ("ddim", 1.0, "linspace", None),
    "ddpm clip box": ("ddim", 1.0, "linspace", "box"),
    "ddim": ("ddim", 0.0, "linspace", None),
    "ddim trailing": ("ddim", 0.0, "trailing", None),
    "ddim clip 3": ("ddim", 0.0, "linspace", 3.0),
    "ddim clip box": ("ddim", 0.0, "linspace", "box"),
    "ddim trailing clip box": ("ddim", 0.0, "trailing", "box"),
    "flow euler": ("euler", 0.0, None, None),
}
STEPS = (1, 2, 3, 5, 10, 20, 50, 100)


def sample_method(name: str, method: str, steps: int, n: int = 2000, seed: int = 0) -> torch.Tensor:
    """n points (n, 2) from the shipped model of toy `name` with `method` (a key of METHODS) in `steps` steps."""
    from .pretrained import load_pretrained
    sampler, eta, spacing, clip = METHODS[method]
    if sampler == "euler":
        return load_pretrained(f"{name}-flow", device="cpu").sample(n=n, steps=steps, seed=seed)
    pipe = load_pretrained(name, device="cpu")
    if clip is not None:
        assert pipe.prediction == "epsilon", "ClipX0 wraps an eps-network"
        lo, hi = data_box(name) if clip == "box" else (torch.full((2,), -clip), torch.full((2,), clip))
        pipe = dataclasses.replace(pipe, model=ClipX0(pipe.model, pipe.schedule, lo, hi))
    return pipe.sample(n=n, sampler=sampler, steps=steps, eta=eta, spacing=spacing, seed=seed)


def sweep(toys=TOYS, methods=tuple(METHODS), steps=STEPS, seeds=(0, 1, 2), n: int = 2000, log=print) -> dict:
    """{"floor": {toy: [mean, sd]}, "energy": {toy: {method: {steps: mean over seeds}}}, "sliced_w1": same,
    "outside": same, the % of points farther than 0.5 outside the data's box, "min_x": the most negative
    coordinate drawn}. The energy distance barely sees rare far points (a fraction p at distance D adds ~2 p^2 D),
    the sliced W1 and "outside" do."""
    out = {"n": n, "seeds": list(seeds), "floor": {}, "floor_sliced_w1": {}, "energy": {}, "sliced_w1": {},
           "outside": {}, "min_x": {}}
    for name in toys:
        out["floor"][name] = floor(name, n)
        out["floor_sliced_w1"][name] = floor(name, n, metric="sliced_w1")
        lo, hi = data_box(name, margin=0.5)
        for key in ("energy", "sliced_w1", "outside", "min_x"):
            out[key][name] = {m: {} for m in methods}
        for m in methods:
            t0 = time.time()
            for s in steps:
                pts = [sample_method(name, m, s, n, seed) for seed in seeds]
                out["energy"][name][m][s] = sum(distance(name, p) for p in pts) / len(pts)
                out["sliced_w1"][name][m][s] = sum(distance(name, p, "sliced_w1") for p in pts) / len(pts)
                out["outside"][name][m][s] = 100 * sum(float(((p < lo) | (p > hi)).any(1).float().mean())
                                                       for p in pts) / len(pts)
                out["min_x"][name][m][s] = min(float(p.min()) for p in pts)
            log(f"{name:13s} {m:24s} " + " ".join(f"{out['energy'][name][m][s]:.4f}" for s in steps)
                + f"  ({time.time() - t0:.1f} s)")
    return out


def markdown(res: dict, key: str = "energy") -> str:
    """One table per toy: method x steps, with the real-vs-real floor in the heading."""
    lines = []
    fkey = {"energy": "floor", "sliced_w1": "floor_sliced_w1"}.get(key)
    for name, table in res[key].items():
        steps = list(next(iter(table.values())))
        head = f"**{name}** (floor {res[fkey][name][0]:.4f} ± {res[fkey][name][1]:.4f})" if fkey else f"**{name}**"
        lines += [head, "",
                  "| method | " + " | ".join(str(s) for s in steps) + " |", "|---|" + "---:|" * len(steps)]
        for m, row in table.items():
            lines.append(f"| {m} | " + " | ".join(_fmt(row[s]) for s in steps) + " |")
        lines.append("")
    return "\n".join(lines)


def _fmt(v: float) -> str:
    return "0" if v == 0 else f"{v:.4f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def plot(res: dict, path: Path) -> None:
    """Energy distance against steps (log-log), one panel per toy, the floor dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    toys = list(res["energy"])
    fig, axes = plt.subplots(1, len(toys), figsize=(4 * len(toys), 3.6), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, name in zip(axes, toys):
        for m, row in res["energy"][name].items():
            ax.plot([int(s) for s in row], list(row.values()), marker="o", ms=3, label=m)
        ax.axhline(res["floor"][name][0], color="k", ls="--", lw=1, label="floor (real vs real)")
        ax.set(xscale="log", yscale="log", title=name, xlabel="steps")
    axes[0].set_ylabel("energy distance")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ddpm.toy_metrics", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="results/flow", help="folder for steps.json, steps.md and steps.png")
    p.add_argument("--toys", default=",".join(TOYS), help="comma-separated toy names")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated: " + ", ".join(METHODS))
    p.add_argument("--steps", default=",".join(map(str, STEPS)), help="comma-separated step counts")
    p.add_argument("--seeds", default="0,1,2", help="noise seeds; every method starts from the same noise")
    p.add_argument("--n", type=int, default=2000, help="samples per seed (and real points per reference set)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    res = sweep(a.toys.split(","), a.methods.split(","), [int(s) for s in a.steps.split(",")],
                [int(s) for s in a.seeds.split(",")], a.n)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "steps.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "steps.md").write_text("## Energy distance\n\n" + markdown(res) + "\n## Sliced W1\n\n"
                                  + markdown(res, "sliced_w1") + "\n## % of points 0.5 outside the data's box\n\n"
                                  + markdown(res, "outside"))
    plot(res, out / "steps.png")
    print(f"wrote {out}/steps.{{json,md,png}} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
