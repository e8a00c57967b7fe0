"""The models shipped in assets/models, loaded offline: `load_pretrained("fashion-mnist")`.

A Pipeline is a trained network + its schedule + the sampling loop, with arguments checked so that
nonsense gets a clear ValueError (the app turns those into messages).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from .checkpoint import load_diffusion
from .flow import FlowPipeline, is_flow_config, load_flow_pipeline
from .forward import q_sample
from .samplers import SAMPLERS, VARIANCES, Frame, guided, sample_loop, timesteps_for
from .toy import TOYS

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "models"
IMAGE_MODELS = ("fashion-mnist",)
MAX_GUIDANCE = 20.0


PRECISIONS = ("float32", "bfloat16", "auto")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX-512 BF16 or AMX, where bfloat16 convolutions are ~1.7x faster than
    float32. Elsewhere bfloat16 is emulated and slower, so "auto" precision stays float32.

    DDPM_NATIVE_BF16=1 (or 0) overrides the detection, so that the tests can be run on an AVX2-only
    machine exactly as they would run on one with native bfloat16 (emulated there: slower, still correct).
    """
    forced = os.environ.get("DDPM_NATIVE_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Autocast(torch.nn.Module):
    """Runs `model` under bfloat16 autocast and hands back float32, so the sampler's update
    arithmetic (and guidance's difference of two predictions) stays in float32."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.model(x, t, labels=labels).float()


@dataclass
class Pipeline:
    """A shipped model ready to sample. Images come out in [0, 1]; toy points as they are."""

    name: str
    model: torch.nn.Module
    schedule: object
    prediction: str
    data_shape: tuple[int, ...]
    classes: list[str] | None
    device: torch.device
    precision: str = "float32"   # "bfloat16": the network runs under autocast (faster on recent CPUs)
    # where guidance applies unless a call says otherwise: this model's tuned (t_lo, t_hi) from the
    # "sampling" section of its JSON (see MODEL_CARD.md), or None for classic guidance at every step
    guidance_interval: tuple[int, int] | None = None
    # the JSON's "sampling" defaults: DDIM steps and spacing when a call gives none; guidance_distilled:
    # the scale built into the network by progressive distillation (ddpm/progressive.py), None for the rest
    default_steps: int = 50
    spacing: str = "linspace"
    guidance_distilled: float | None = None

    @property
    def is_image(self) -> bool:
        return len(self.data_shape) == 3

    @property
    def network(self) -> torch.nn.Module:
        """What the sampler calls: the model itself, or the model under bfloat16 autocast."""
        return Autocast(self.model) if self.precision == "bfloat16" else self.model

    @property
    def timesteps(self) -> int:
        return self.schedule.timesteps

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ---- argument checking ------------------------------------------------------------------------
    def label_indices(self, labels: Sequence[int | str] | None, n: int) -> torch.Tensor | None:
        """Class names or indices (one, or one per image) -> (n,) long tensor; None stays None."""
        if labels is None:
            return None
        if not self.classes:
            raise ValueError(f"model {self.name!r} has no classes; use labels=None")
        if isinstance(labels, (str, int)):
            labels = [labels]
        out = []
        for lab in labels:
            if isinstance(lab, str) and lab in self.classes:
                out.append(self.classes.index(lab))
            elif isinstance(lab, int) and not isinstance(lab, bool) and 0 <= lab < len(self.classes):
                out.append(lab)
            else:
                raise ValueError(f"unknown class {lab!r}; choose one of: {', '.join(self.classes)} (or 0-9)")
        if len(out) == 1:
            out = out * n
        if len(out) != n:
            raise ValueError(f"got {len(out)} labels for {n} images; give one label or one per image")
        return torch.tensor(out, dtype=torch.long, device=self.device)

    def check(self, n: int, sampler: str, steps: int, eta: float, guidance_scale: float, variance: str,
              start_t: int | None, guidance_interval: tuple[int, int] | None = None) -> None:
        T = self.timesteps
        limit = 1024 if self.is_image else 20000
        if not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= limit):
            raise ValueError(f"n must be an integer between 1 and {limit}, got {n!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if variance not in VARIANCES:
            raise ValueError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}")
        if sampler == "ddim" and not (isinstance(steps, int) and 1 <= steps <= T):   # DDPM visits every t
            raise ValueError(f"steps must be an integer between 1 and T={T}, got {steps!r}")
        if not 0.0 <= float(eta) <= 1.0:                       # also False for NaN
            raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
        if not 0.0 <= float(guidance_scale) <= MAX_GUIDANCE:
            raise ValueError(f"guidance_scale must lie in [0, {MAX_GUIDANCE:g}], got {guidance_scale!r}")
        if start_t is not None and not (isinstance(start_t, int) and 0 <= start_t <= T - 1):
            raise ValueError(f"start_t must be an integer in [0, {T - 1}], got {start_t!r}")
        iv = guidance_interval
        if iv is not None and not (isinstance(iv, (tuple, list)) and len(iv) == 2
                                   and all(isinstance(v, int) and not isinstance(v, bool) for v in iv)
                                   and 0 <= iv[0] <= iv[1] <= T - 1):
            raise ValueError(f"guidance_interval must be two integers 0 <= t_lo <= t_hi <= {T - 1}, got {iv!r}")

    # ---- how this model's space meets pixels (a latent model overrides these: ddpm/latent.py) ----------
    def to_model_space(self, images: torch.Tensor) -> torch.Tensor:
        """Images (n, C, H, W) in [0, 1] -> the space the diffusion runs in: [-1, 1] (toy points as they are)."""
        return images * 2 - 1 if self.is_image else images

    def from_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of to_model_space: [-1, 1] -> images in [0, 1] (toy points as they are)."""
        return (x.clamp(-1, 1) + 1) / 2 if self.is_image else x

    def output_frame(self, f: Frame) -> Frame:
        return Frame(t=f.t, x_t=self.from_model_space(f.x_t), x0_pred=self.from_model_space(f.x0_pred))

    @property
    def clip_x0(self) -> bool:
        """Clip the predicted x_0 to [-1, 1] while sampling: right for pixels, wrong for latents or points."""
        return self.is_image

    # ---- sampling ---------------------------------------------------------------------------------
    def initial_noise(self, n: int, seed: int = 0) -> torch.Tensor:
        """x_T ~ N(0, I), (n, *data_shape), from a private generator: the same seed gives the same snow."""
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn((n, *self.data_shape), generator=g).to(self.device)

    def progressive(self, n: int = 16, sampler: str = "ddim", steps: int | None = None, eta: float = 0.0,
                    guidance_scale: float = 3.0, labels: Sequence[int | str] | None = None, seed: int = 0,
                    variance: str = "fixed_small", init_image: torch.Tensor | None = None,
                    start_t: int | None = None, x_T: torch.Tensor | None = None,
                    spacing: str | None = None,
                    guidance_interval: tuple[int, int] | None | str = "default",
                    negative_labels: Sequence[int | str] | None = None) -> Iterator[Frame]:
        """Yield one Frame(t, x_t, x0_pred) per reverse step; images mapped to [0, 1].

        init_image (n or 1, C, H, W) in [0, 1] with start_t: noise it to start_t with q_sample
        (Eq. 4) and denoise from there (SDEdit, Meng et al. 2022). x_T: use this starting noise.
        guidance_interval (t_lo, t_hi): apply guidance only for t_lo <= t <= t_hi, the plain conditional
        model elsewhere (Kynkäänniemi et al. 2024: more diverse samples, fewer network calls); None:
        classic guidance at every step (Ho & Salimans 2022); "default": the model's `guidance_interval`.
        steps / spacing None: the model's `default_steps` / `spacing` (50 / "linspace" unless its JSON says).
        negative_labels: a negative prompt (class names or indices) whose prediction replaces the
        unconditional one in guidance: eps = eps_neg + s (eps_pos - eps_neg) (see samplers.guided).
        A model with `guidance_distilled` has its scale built in: one conditional pass per step, and any
        guidance_scale > 0 gives that scale (s = 0 or labels=None: the unconditional model).
        """
        steps = self.default_steps if steps is None else steps
        spacing = self.spacing if spacing is None else spacing
        if guidance_interval == "default":
            guidance_interval = self.guidance_interval
        if init_image is not None and start_t is None:
            start_t = int(self.timesteps * 0.6)
        self.check(n, sampler, steps, eta, guidance_scale, variance, start_t if init_image is not None else None,
                   guidance_interval)
        lab, neg = self.label_indices(labels, n), self.label_indices(negative_labels, n)
        if neg is not None and self.guidance_distilled is not None:
            raise ValueError(f"model {self.name!r} has its guidance distilled into one pass: no negative prompt")
        g = torch.Generator().manual_seed(int(seed))                    # private: no global RNG touched
        x = torch.randn((n, *self.data_shape), generator=g).to(self.device) if x_T is None else x_T.to(self.device)
        if init_image is not None:
            x0 = self.to_model_space(init_image.to(self.device, torch.float32)).expand(n, *self.data_shape)
            x = q_sample(self.schedule, x0, start_t, x)                 # the drawn noise becomes eps of Eq. 4
        ts = timesteps_for(sampler, steps, self.timesteps, start_t if init_image is not None else None, spacing)
        if self.guidance_distilled is not None:
            fn = guided(self.network, lab, 1.0 if guidance_scale else 0.0)     # one pass, guidance built in
        else:
            fn = guided(self.network, lab, float(guidance_scale), guidance_interval, neg)
        for f in sample_loop(fn, self.schedule, x, ts, sampler, eta=float(eta), variance=variance,
                             prediction=self.prediction, clip=self.clip_x0, generator=g):
            yield self.output_frame(f)

    def interpolation_start(self, x_a: torch.Tensor, x_b: torch.Tensor, t: int, lam: float | Sequence[float],
                            seed: int = 0) -> tuple[torch.Tensor, torch.Generator]:
        """Where `interpolate`'s reverse chain starts: x_bar_t = (1 - lam) x_a,t + lam x_b,t (Ho et al. 2020,
        Sec. 4.3), both images noised to t with the same eps (Eq. 4). -> ((len(lam), *data_shape) in the model's
        space, the generator that drew eps, from which a DDPM chain draws its further noise)."""
        lams = torch.tensor([lam] if isinstance(lam, (int, float)) else list(lam), dtype=torch.float32)
        if lams.numel() < 1 or not bool(((lams >= 0) & (lams <= 1)).all()):
            raise ValueError(f"lam must lie in [0, 1], got {lam!r}")
        for name, x in (("x_a", x_a), ("x_b", x_b)):
            if tuple(x.shape) != (1, *self.output_shape):
                raise ValueError(f"{name} must have shape (1, {', '.join(map(str, self.output_shape))}), "
                                 f"got {tuple(x.shape)}")
        if not (isinstance(t, int) and not isinstance(t, bool) and 0 <= t <= self.timesteps - 1):
            raise ValueError(f"start_t must be an integer in [0, {self.timesteps - 1}], got {t!r}")
        g = torch.Generator().manual_seed(int(seed))
        eps = torch.randn((1, *self.data_shape), generator=g).to(self.device)        # one noise for all
        x_at = q_sample(self.schedule, self.to_model_space(x_a.to(self.device, torch.float32)), t, eps)   # Eq. 4
        x_bt = q_sample(self.schedule, self.to_model_space(x_b.to(self.device, torch.float32)), t, eps)
        lam_b = lams.to(self.device).reshape(-1, *[1] * len(self.data_shape))          # (k, 1, 1, 1)
        return (1 - lam_b) * x_at + lam_b * x_bt, g                                    # (k, C, H, W): Sec. 4.3

    @torch.inference_mode()
    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, t: int, lam: float | Sequence[float],
                    seed: int = 0, sampler: str = "ddim", steps: int | None = None) -> torch.Tensor:
        """Interpolate two images through the diffusion (Ho et al. 2020, Sec. 4.3, Fig. 8).

        x_a, x_b (1, C, H, W) in [0, 1] are both noised to t with the *same* noise eps (Eq. 4), mixed,
        x_bar_t = (1 - lam) x_a,t + lam x_b,t (`interpolation_start`), and denoised by the unconditional model
        from t to 0. lam: one value or several (one output image each, as one batch). From a large t little of
        either image survives and the model fills in a plausible in-between; from a small t the result is nearly
        the cross-fade. lam = 0 (or 1) gives exactly `sample(n=1, init_image=x_a (or x_b), start_t=t, seed=seed,
        guidance_scale=0, ...)`. Ho et al. draw one noise per image; one shared noise keeps x_bar_t on the
        marginal q(x_t), for any lam. DDIM (deterministic) by default: steps in proportion to t.
        Returns (len(lam), C, H, W) in [0, 1].
        """
        x, g = self.interpolation_start(x_a, x_b, t, lam, seed)
        steps = self.default_steps if steps is None else steps
        self.check(x.shape[0], sampler, steps, 0.0, 0.0, "fixed_small", t)
        ts = timesteps_for(sampler, steps, self.timesteps, t, self.spacing)
        fn = guided(self.network, None, 0.0)                                            # unconditional
        frame = None
        for frame in sample_loop(fn, self.schedule, x, ts, sampler, prediction=self.prediction,
                                 clip=self.clip_x0, generator=g):
            pass
        return self.output_frame(frame).x_t

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape of one output image (or point): the data shape for a pixel model."""
        return self.data_shape

    def sample(self, n: int = 16, **kwargs) -> torch.Tensor:
        """The final images (n, C, H, W) in [0, 1] (toys: points (n, 2)). Same arguments as progressive."""
        frame = None
        for frame in self.progressive(n, **kwargs):
            pass
        return frame.x_t


_CACHE: dict[tuple[str, str], Pipeline] = {}


def available() -> list[str]:
    return sorted(p.stem for p in ASSETS.glob("*.json"))


def model_stem(name: str | Path) -> Path:
    """A shipped name (assets/models/NAME) or the path of any checkpoint the Trainer wrote, without
    extension -> the path both files share; ValueError if there is no such model."""
    stem = Path(name) if Path(str(name) + ".json").exists() else ASSETS / name
    if not Path(str(stem) + ".json").exists():
        raise ValueError(f"no shipped model {name!r}; available: {', '.join(available()) or 'none'}")
    return stem


def load_pretrained(name: str = "fashion-mnist", device: str | torch.device | None = None,
                    precision: str = "float32") -> Pipeline | FlowPipeline:
    """Load a shipped model by name from assets/models (never the network). Cached per device.
    A flow-matching model (e.g. "two-moons-flow") comes back as a FlowPipeline: same sample / progressive.

    precision: "float32" (exact), "bfloat16" (the network under autocast: ~1.7x faster on CPUs
    with AVX-512 BF16, same images to the eye) or "auto" (bfloat16 only on such CPUs).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    device = torch.device(device) if device is not None else default_device()
    if precision == "auto":
        precision = "bfloat16" if device.type == "cpu" and cpu_has_native_bf16() else "float32"
    key = (name, str(device))
    if key in _CACHE:
        return dataclasses.replace(_CACHE[key], precision=precision)   # shares the weights
    stem = model_stem(name)
    config = json.loads(Path(str(stem) + ".json").read_text())
    if is_flow_config(config):                  # a flow-matching model (ddpm/flow.py): Euler steps, its own pipeline
        _CACHE[key] = load_flow_pipeline(name, stem, device)
        return dataclasses.replace(_CACHE[key], precision=precision)
    if "autoencoder" in config:                 # latent diffusion (ddpm/latent.py): the autoencoder comes along
        from .latent import load_latent_pipeline
        _CACHE[key] = load_latent_pipeline(name, stem, device)
        return dataclasses.replace(_CACHE[key], precision=precision)
    diffusion = load_diffusion(stem, use_ema=True, device=device)
    model = diffusion.model.eval().requires_grad_(False)
    sampling = config.get("sampling", {})
    interval = sampling.get("guidance_interval")
    distilled = sampling.get("guidance_scale", 1.0) if sampling.get("guidance") == "distilled" else None
    pipe = Pipeline(name=name, model=model, schedule=diffusion.schedule.to(device), prediction=diffusion.prediction,
                    data_shape=diffusion.data_shape, classes=config.get("classes"), device=device,
                    guidance_interval=tuple(interval) if interval else None,
                    default_steps=sampling.get("steps", 50), spacing=sampling.get("spacing", "linspace"),
                    guidance_distilled=distilled)
    _CACHE[key] = pipe
    return dataclasses.replace(pipe, precision=precision)


__all__ = ["load_pretrained", "model_stem", "Pipeline", "FlowPipeline", "available", "IMAGE_MODELS", "TOYS"]
