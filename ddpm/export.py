"""Turn a training checkpoint into a shipped model: EMA weights only (what samples best), plus config.

    python -m ddpm.export results/fashion-mnist/model-0012000 assets/models/fashion-mnist
"""
from __future__ import annotations

import sys
from pathlib import Path

from .checkpoint import load_checkpoint, save_checkpoint, unprefixed


def export(checkpoint: str | Path, out: str | Path, classes: list[str] | None = None) -> None:
    tensors, config = load_checkpoint(checkpoint)
    shipped = {f"ema.{k}": v for k, v in unprefixed("ema", tensors).items()}
    keep = {k: config[k] for k in ("model", "diffusion", "trainer", "step") if k in config}
    keep["classes"] = classes or config.get("classes")
    save_checkpoint(out, shipped, keep)


if __name__ == "__main__":
    from .data import FASHION_MNIST_CLASSES
    export(sys.argv[1], sys.argv[2], FASHION_MNIST_CLASSES if "fashion" in sys.argv[2] else None)
