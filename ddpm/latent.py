"""Latent diffusion (Rombach et al. 2022): the DDPM of this package, run on an autoencoder's latents.

    x (1, 28, 28) --E--> z = scale_factor * mean(x)  (4, 7, 7) --DDPM/DDIM in z--> z_0 --D--> x_hat (1, 28, 28)

Nothing in the diffusion changes: the same schedule, the same eps-prediction loss (Eq. 14) and the same
samplers, only on 196 numbers instead of 784, and without clipping x0_pred (a latent has no range of [-1, 1]).
The pipeline carries the autoencoder with it, so `load_pretrained("fashion-mnist-latent")` can encode, sample
and decode, and each frame of a reverse run holds both the latents and their decodings.

One checkpoint holds both networks: the diffusion model's EMA weights (`ema.*`) and the autoencoder's
(`autoencoder.*`); its JSON has an "autoencoder" section with the autoencoder's config and scale factor.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .autoencoder import Autoencoder, load_autoencoder
from .checkpoint import build_diffusion, load_checkpoint, prefixed, save_checkpoint, unprefixed
from .data import TensorImageDataset, load_fashion_mnist, FASHION_MNIST_CLASSES
from .pretrained import Pipeline
from .samplers import Frame

PIXEL_SHAPE = (1, 28, 28)


class LatentFrame:
    """A Frame of a latent run: t, the latents z_t / z0_pred (n, 4, 7, 7), and x_t / x0_pred, their decodings to
    pixels (n, 1, 28, 28) in [0, 1]. Decoding is done on first use only: it costs about as much as a step of the
    network, so `sample`, which shows only the last frame, decodes only that one."""

    def __init__(self, t: int, z_t: torch.Tensor, z0_pred: torch.Tensor, decode):
        self.t, self.z_t, self.z0_pred, self._decode, self._pixels = t, z_t, z0_pred, decode, {}

    def _pix(self, name: str) -> torch.Tensor:
        if name not in self._pixels:
            self._pixels[name] = self._decode(getattr(self, name))
        return self._pixels[name]

    @property
    def x_t(self) -> torch.Tensor:
        return self._pix("z_t")

    @property
    def x0_pred(self) -> torch.Tensor:
        return self._pix("z0_pred")


@dataclass
class LatentPipeline(Pipeline):
    """A Pipeline whose data are scaled latents; `sample` / `progressive` return decoded images."""

    autoencoder: Autoencoder | None = None
    scale_factor: float = 1.0

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (n, 1, 28, 28) in [0, 1] -> scaled latents (n, 4, 7, 7): scale_factor * the posterior mean."""
        if images.dim() != 4 or tuple(images.shape[1:]) != PIXEL_SHAPE:
            raise ValueError(f"images must have shape (n, 1, 28, 28), got {tuple(images.shape)}")
        mean, _ = self.autoencoder.encode(images.to(self.device, torch.float32))
        return mean * self.scale_factor

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (n, 4, 7, 7) -> images (n, 1, 28, 28) in [0, 1]."""
        return self.autoencoder.decode(latents.to(self.device, torch.float32) / self.scale_factor)

    # the hooks Pipeline.progressive / interpolate call: pixels meet the model through the autoencoder
    def to_model_space(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)

    def from_model_space(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(x)

    def output_frame(self, f: Frame) -> LatentFrame:
        return LatentFrame(f.t, f.x_t, f.x0_pred, self.decode)

    @property
    def clip_x0(self) -> bool:
        return False

    @property
    def output_shape(self) -> tuple[int, ...]:
        return PIXEL_SHAPE


def latent_dataset(autoencoder_stem: str | Path, batch: int = 1000) -> TensorImageDataset:
    """Fashion-MNIST's 60k training images as scaled latents (N, 4, 7, 7), with their labels: what the latent
    diffusion model trains on. The posterior mean is used (its std is small: see MODEL_CARD.md)."""
    ae, config = load_autoencoder(autoencoder_stem)
    images, labels = load_fashion_mnist(split="train")
    with torch.no_grad():
        z = torch.cat([ae.encode(images[i:i + batch].float() / 255)[0] for i in range(0, len(images), batch)])
    return TensorImageDataset(z * config["scale_factor"], labels, FASHION_MNIST_CLASSES)


def export_latent(checkpoint: str | Path, autoencoder_stem: str | Path, out: str | Path) -> None:
    """Ship a latent diffusion model: the Trainer checkpoint's EMA weights and the autoencoder, in one file."""
    tensors, config = load_checkpoint(checkpoint)
    ae_tensors, ae_config = load_checkpoint(autoencoder_stem)
    shipped = {**{f"ema.{k}": v for k, v in unprefixed("ema", tensors).items()},
               **prefixed("autoencoder", unprefixed("ema", ae_tensors))}
    keep = {k: config[k] for k in ("model", "diffusion", "trainer", "step", "classes") if k in config}
    keep["autoencoder"] = {k: ae_config[k] for k in ("model", "scale_factor", "latent_shape", "step", "train")}
    previous = Path(str(out) + ".json")
    if previous.exists():               # sampling settings tuned for the shipped model stay
        keep.update({k: v for k, v in json.loads(previous.read_text()).items() if k == "sampling"})
    save_checkpoint(out, shipped, keep)


def load_latent_pipeline(name: str, stem: str | Path, device: torch.device) -> LatentPipeline:
    """What load_pretrained returns for a checkpoint with an "autoencoder" section."""
    tensors, config = load_checkpoint(stem, device)
    diffusion = build_diffusion(config).to(device)
    diffusion.model.load_state_dict(unprefixed("ema", tensors))
    ae = Autoencoder(**config["autoencoder"]["model"]).to(device)
    ae.load_state_dict(unprefixed("autoencoder", tensors))
    sampling = config.get("sampling", {})
    interval = sampling.get("guidance_interval")
    return LatentPipeline(name=name, model=diffusion.model.eval().requires_grad_(False),
                          schedule=diffusion.schedule.to(device), prediction=diffusion.prediction,
                          data_shape=diffusion.data_shape, classes=config.get("classes"), device=device,
                          guidance_interval=tuple(interval) if interval else None,
                          default_steps=sampling.get("steps", 50), spacing=sampling.get("spacing", "linspace"),
                          autoencoder=ae.eval().requires_grad_(False),
                          scale_factor=float(config["autoencoder"]["scale_factor"]))
