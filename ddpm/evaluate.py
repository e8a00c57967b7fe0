"""How good are the samples? A Fréchet distance in the feature space of a small Fashion-MNIST
classifier that this project trains and ships (no Inception weights can be downloaded here),
printed beside its floor (real train vs real test) and its ceiling (noise), plus class agreement.

    python -m ddpm evaluate --model fashion-mnist          # the table in assets/models/MODEL_CARD.md
    python -m ddpm evaluate --train-classifier             # (re)train the feature network
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .data import load_fashion_mnist
from .pretrained import ASSETS, PRECISIONS, load_pretrained

CLASSIFIER = ASSETS / "fashion-classifier.safetensors"


class FashionClassifier(nn.Module):
    """A small CNN: (B, 1, 28, 28) in [0, 1] -> 10 logits; `features` gives the 64-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),     # 14x14
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),    # 7x7
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - 0.286) / 0.353)                                   # (B, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(epochs: int = 3, seed: int = 0) -> tuple[FashionClassifier, float]:
    """Train on the 60k training images (random shifts as augmentation); returns (model, test accuracy)."""
    torch.manual_seed(seed)
    x, y = load_fashion_mnist(split="train")
    x = x.float() / 255
    model, g = FashionClassifier(), torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
    steps = epochs * (len(x) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        xb = x[idx]
        dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
        xb = torch.roll(xb, (dx, dy), dims=(2, 3))
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return model, accuracy(model)


@torch.no_grad()
def accuracy(model: FashionClassifier) -> float:
    x, y = load_fashion_mnist(split="test")
    pred = torch.cat([model(x[i:i + 1000].float() / 255).argmax(1) for i in range(0, len(x), 1000)])
    return (pred == y).float().mean().item()


def load_classifier() -> FashionClassifier:
    model = FashionClassifier()
    model.load_state_dict(load_file(str(CLASSIFIER)))
    return model.eval()


@torch.no_grad()
def features(model: FashionClassifier, images: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) in [0, 1] -> (N, 64) float64."""
    return torch.cat([model.features(images[i:i + 1000].float()) for i in range(0, len(images), 1000)]).double()


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between Gaussians fitted to two feature sets."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = torch.cov(f1.T), torch.cov(f2.T)
    # Tr((S1 S2)^(1/2)) = sum of sqrt of the eigenvalues of S1^(1/2) S2 S1^(1/2) (symmetric, PSD)
    w, v = torch.linalg.eigh(s1)
    r1 = v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T
    tr_sqrt = torch.linalg.eigvalsh(r1 @ s2 @ r1).clamp(min=0).sqrt().sum()
    return ((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * tr_sqrt).item()


def real_floor(clf: FashionClassifier, train_x: torch.Tensor, test_f: torch.Tensor, m: int, seed: int = 0,
               repeats: int = 10) -> float:
    """The distance a perfect generator would get at sample size m: m real *training* images against the
    test set, averaged over `repeats` random subsets (one subset of 500 varies by a factor of 2 or more)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + m)                  # independent of the rows' order
    return sum(frechet_distance(features(clf, train_x[torch.randperm(len(train_x), generator=g)[:m]].float() / 255),
                                test_f) for _ in range(repeats)) / repeats


def evaluate(model_name: str = "fashion-mnist", n: int = 1000, n_ddpm: int = 250, guidance_scale: float = 3.0,
             seed: int = 0, configs: list[tuple[str, int]] | None = None,
             precision: str = "float32", guidance_interval: tuple[int, int] | None | str = "default",
             kinds: tuple[bool, ...] = (True, False)) -> list[dict]:
    """Rows of the evaluation table. Floors and ceilings are measured at the same sample size as the
    row they stand beside, since a Fréchet distance from few samples is biased upwards."""
    # (the floor no longer draws from `g`, so the ceiling's noise differs from tables made before 2026-11-26)
    clf, pipe = load_classifier(), load_pretrained(model_name, precision=precision)
    test_x, _ = load_fashion_mnist(split="test")
    train_x, _ = load_fashion_mnist(split="train")
    test_f = features(clf, test_x.float() / 255)
    g = torch.Generator().manual_seed(seed)
    configs = configs or [("ddpm", 1000), ("ddim", 50), ("ddim", 20)]
    rows = []
    for sampler, steps in configs:
        m = n_ddpm if sampler == "ddpm" else n
        floor = real_floor(clf, train_x, test_f, m, seed)
        ceiling = frechet_distance(features(clf, torch.rand(m, 1, 28, 28, generator=g)), test_f)
        for conditional in kinds:
            labels = (torch.arange(m) % 10).tolist() if conditional else None
            t0, imgs = time.time(), []
            for i in range(0, m, 250):
                k = min(250, m - i)
                imgs.append(pipe.sample(n=k, sampler=sampler, steps=steps, guidance_scale=guidance_scale,
                                        labels=labels[i:i + k] if labels else None, seed=seed + i,
                                        guidance_interval=guidance_interval))
            imgs = torch.cat(imgs)
            row = dict(sampler=f"{sampler.upper()}-{steps}", conditional=conditional, n=m,
                       fd=frechet_distance(features(clf, imgs), test_f), floor=floor, ceiling=ceiling,
                       seconds=time.time() - t0)
            if conditional:
                with torch.no_grad():
                    pred = torch.cat([clf(imgs[i:i + 1000]).argmax(1) for i in range(0, m, 1000)])
                row["agreement"] = (pred == torch.tensor(labels)).float().mean().item()
            rows.append(row)
    return rows


@torch.no_grad()
def evaluate_autoencoder(model_name: str = "fashion-mnist-latent", n: int = 500, seed: int = 0) -> dict:
    """A latent model's autoencoder alone: reconstruction error of the 10k test images (mean squared, pixels in
    [0, 1], and PSNR), and Fréchet distances with the project's classifier: the 10k reconstructions against the
    10k originals, and n reconstructed training images against the test set beside the same n originals (so the
    autoencoder's share of a latent model's distance can be read off at the sample count of its rows)."""
    clf, pipe = load_classifier(), load_pretrained(model_name)
    test_x, _ = load_fashion_mnist(split="test")
    train_x, _ = load_fashion_mnist(split="train")
    test = test_x.float() / 255
    rec = torch.cat([pipe.decode(pipe.encode(test[i:i + 1000])) for i in range(0, len(test), 1000)])
    mse = (rec - test).pow(2).mean().item()
    test_f = features(clf, test)
    idx = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))[:n]
    orig = train_x[idx].float() / 255
    return dict(mse=mse, psnr=10 * torch.log10(torch.tensor(1 / mse)).item(),
                fd_rec_vs_orig_10k=frechet_distance(features(clf, rec), test_f),
                fd_train_n=frechet_distance(features(clf, orig), test_f),
                fd_train_rec_n=frechet_distance(features(clf, pipe.decode(pipe.encode(orig))), test_f), n=n)


def format_table(rows: list[dict], accuracy_value: float, guidance_scale: float) -> str:
    out = [f"Classifier test accuracy: {accuracy_value:.2%}. Guidance scale {guidance_scale:g} for conditional rows.", "",
           "| sampler | samples | n | Fréchet distance | floor (real vs real) | ceiling (noise) | FD / floor "
           "| class agreement | time |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        agree = f"{r['agreement']:.1%}" if "agreement" in r else "–"
        out.append(f"| {r['sampler']} | {'conditional' if r['conditional'] else 'unconditional'} | {r['n']} "
                   f"| {r['fd']:.2f} | {r['floor']:.2f} | {r['ceiling']:.1f} | {r['fd'] / r['floor']:.2f}x "
                   f"| {agree} | {r['seconds']:.0f} s |")
    return "\n".join(out)


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="Fréchet distance and class agreement of a shipped model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="fashion-mnist", help="shipped model to evaluate")
    p.add_argument("--n", type=int, default=1000, help="samples per DDIM row (and its floor/ceiling)")
    p.add_argument("--n-ddpm", type=int, default=250, help="samples per DDPM-1000 row (1000 steps each: slow)")
    p.add_argument("--guidance-scale", type=float, default=3.0, help="guidance for the conditional rows")
    p.add_argument("--guidance-interval", default="default", metavar="LO,HI",
                   help="guide only for LO <= t <= HI, plain conditional elsewhere (Kynkäänniemi et al. 2024); "
                        "'none': classic guidance at every step; 'default': the model's own interval")
    p.add_argument("--rows", choices=["both", "conditional", "unconditional"], default="both",
                   help="which rows to sample")
    p.add_argument("--configs", default=None, metavar="ddim:50,ddim:20",
                   help="sampler:steps list (default ddpm:1000,ddim:50,ddim:20; --skip-ddpm drops ddpm)")
    p.add_argument("--seed", type=int, default=0, help="seeds sampling and the choice of real images")
    p.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="the network's precision while sampling (the app uses auto)")
    p.add_argument("--skip-ddpm", action="store_true", help="only the DDIM rows")
    p.add_argument("--autoencoder", action="store_true",
                   help="a latent model's autoencoder alone: reconstruction error and Fréchet distances (then exit)")
    p.add_argument("--train-classifier", action="store_true",
                   help=f"train the feature classifier and write {CLASSIFIER.name} (then exit)")
    p.set_defaults(func=_main)


def _main(a: argparse.Namespace) -> None:
    if a.train_classifier:
        model, acc = train_classifier()
        save_file(model.state_dict(), str(CLASSIFIER))
        print(f"test accuracy {acc:.4f}; wrote {CLASSIFIER}")
        return
    if a.autoencoder:
        r = evaluate_autoencoder(a.model, a.n, a.seed)
        print(f"reconstruction of the 10k test images: MSE {r['mse']:.5f} (pixels in [0, 1]), PSNR {r['psnr']:.2f} dB; "
              f"FD reconstructions vs originals (10k) {r['fd_rec_vs_orig_10k']:.3f}; n = {r['n']} training images "
              f"against the test set: originals {r['fd_train_n']:.3f}, reconstructions {r['fd_train_rec_n']:.3f}")
        return
    configs = [("ddim", 50), ("ddim", 20)] if a.skip_ddpm else None
    if a.configs:
        configs = [(c.split(":")[0], int(c.split(":")[1])) for c in a.configs.split(",")]
    if a.guidance_interval == "default":
        interval = load_pretrained(a.model).guidance_interval
    elif a.guidance_interval == "none":
        interval = None
    else:
        try:
            interval = tuple(int(v) for v in a.guidance_interval.split(","))
        except ValueError:
            sys.exit(f"--guidance-interval: 'default', 'none' or LO,HI, got {a.guidance_interval!r}")
    kinds = {"both": (True, False), "conditional": (True,), "unconditional": (False,)}[a.rows]
    rows = evaluate(a.model, a.n, a.n_ddpm, a.guidance_scale, a.seed, configs, a.precision, interval, kinds)
    built_in = load_pretrained(a.model).guidance_distilled
    print(f"Guidance s = {built_in:g} built into the network (distilled): one conditional pass per step." if built_in
          else f"Guidance only for {interval[0]} <= t <= {interval[1]}, plain conditional elsewhere." if interval
          else "Guidance at every step (classic).")
    print(format_table(rows, accuracy(load_classifier()), a.guidance_scale))
