"""Turn a training checkpoint into a shipped model, and carry a long CPU training run across sessions.

    python -m ddpm.export export results/toy-rings/model-0008000 assets/models/rings     # a toy: weights only
    python -m ddpm.export pack   results/fashion-mnist/model-0012000 fashion-mnist
    python -m ddpm.export unpack fashion-mnist results/fashion-mnist        # then `python -m ddpm train ...` resumes
    python -m ddpm.export latent results/latent/model-0008000 results/autoencoder/autoencoder \
                                 assets/models/fashion-mnist-latent           # latent diffusion + its autoencoder

`pack` writes assets/models/NAME.{safetensors,json} (EMA weights only: what samples best) and, for resuming,
assets/models/train-state/NAME.{safetensors,json} (raw weights + Adam moments, the moments in bfloat16 to keep
the repository small). `unpack` joins the two back into a Trainer checkpoint.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, save_checkpoint, unprefixed
from .pretrained import ASSETS

STATE = ASSETS / "train-state"


def export(checkpoint: str | Path, out: str | Path, classes: list[str] | None = None) -> None:
    """Write only the EMA weights and the config needed to sample."""
    tensors, config = load_checkpoint(checkpoint)
    shipped = {f"ema.{k}": v for k, v in unprefixed("ema", tensors).items()}
    keep = {k: config[k] for k in ("model", "diffusion", "trainer", "step") if k in config}
    keep["classes"] = classes or config.get("classes")
    previous = Path(str(out) + ".json")
    if previous.exists():               # sampling settings tuned for the shipped model (MODEL_CARD.md) stay
        keep.update({k: v for k, v in json.loads(previous.read_text()).items() if k == "sampling"})
    save_checkpoint(out, shipped, keep)


def pack(checkpoint: str | Path, name: str) -> None:
    """Shipped model + the training state to resume it later (class names come from the checkpoint,
    which the Trainer writes with its data set's)."""
    export(checkpoint, ASSETS / name)
    tensors, config = load_checkpoint(checkpoint)
    state = {k: (v.to(torch.bfloat16) if k.startswith("optim.") and v.is_floating_point() and v.dim() > 0 else v)
             for k, v in tensors.items() if not k.startswith("ema.")}
    save_checkpoint(STATE / name, state, config)


def unpack(name: str, results_folder: str | Path) -> Path:
    """Rebuild results_folder/model-<step> from the shipped EMA weights and the packed training state."""
    state, config = load_checkpoint(STATE / name)
    shipped, _ = load_checkpoint(ASSETS / name)
    tensors = {k: (v.float() if v.dtype == torch.bfloat16 else v) for k, v in state.items()}
    tensors.update(shipped)
    stem = Path(results_folder) / f"model-{config['step']:07d}"
    save_checkpoint(stem, tensors, config)
    return stem


if __name__ == "__main__":
    if sys.argv[1] == "latent":                   # latent CHECKPOINT AUTOENCODER OUT: both networks in one file
        from .latent import export_latent
        print(export_latent(*sys.argv[2:5]))
    else:
        cmd, a, b = sys.argv[1:4]
        print({"export": export, "pack": pack, "unpack": unpack}[cmd](a, b))
