"""Flow matching / rectified flow on the straight path (Lipman et al. 2023; Liu et al. 2023).

Data x_0 and noise eps ~ N(0, I) are joined by a straight line, walked from t = 0 (data) to t = 1 (noise):

    x_t = (1 - t) x_0 + t eps,        t ~ U[0, 1]                       (Liu et al. Eq. 1, Lipman et al. Eq. 22
                                                                          with sigma_min = 0, time reversed)
    dx_t / dt = eps - x_0 =: v                                          the velocity along the line
    L = E_{t, x_0, eps} || (eps - x_0) - v_theta(x_t, t) ||^2           (Liu et al. Eq. 1; Lipman et al. Eq. 23)

Both papers put the noise at t = 0 and the data at t = 1; here time runs the other way, as in DDPM (and in
Esser et al. 2024, SD3), so that t = 1 is pure noise and sampling runs t: 1 -> 0, like x_T -> x_0.
Sampling integrates the ODE dx/dt = v_theta(x, t) backwards with Euler steps of size dt = 1 / steps:

    x_{t - dt} = x_t - dt v_theta(x_t, t)                                one Euler step
    x0_pred    = x_t - t  v_theta(x_t, t)                                the same line followed all the way to t = 0

so one step from eps is x_0 = eps - v_theta(eps, 1), and the last step's x0_pred is the sample itself.

Time conditioning: the network is the DDPM toys' ToyMLP (or the UNet), whose sinusoidal embedding was built for
integer timesteps in [0, T). It takes any real number, so the continuous t in [0, 1] goes in as t * time_scale
(1000 by default, the convention of SD3 and diffusers' flow-matching schedulers): the embedding's frequencies
then resolve t as finely as they resolve a DDPM t out of T = 1000. Nothing in the network changes.

`FlowMatching` has GaussianDiffusion's interface (`forward(x, labels, generator) -> loss`, `sample`, `config`),
so the project's Trainer (AdamW, warm-up, EMA, exact resume, safetensors checkpoints) trains it unchanged.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import build_model, load_checkpoint, unprefixed
from .samplers import Frame

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MAX_STEPS = 1000


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) times -> (B, 1, ..., 1), to broadcast against x (B, ...)."""
    return t.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def flow_interpolate(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t eps (Liu et al. Eq. 1, time reversed): x0, eps (B, ...), t (B,) -> (B, ...)."""
    t = _bcast(t, x0)
    return (1 - t) * x0 + t * eps


def flow_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The velocity of the straight path, d x_t / dt = eps - x_0, what v_theta regresses onto (Eq. 1)."""
    return eps - x0


def euler_times(steps: int) -> list[float]:
    """The steps + 1 times of a uniform Euler run, 1 = t_0 > t_1 > ... > t_steps = 0."""
    if not (isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= MAX_STEPS):
        raise ValueError(f"steps must be an integer between 1 and {MAX_STEPS}, got {steps!r}")
    return [1 - i / steps for i in range(steps)] + [0.0]


def euler_step(v: torch.Tensor, t: float, t_next: float, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler step of dx/dt = v from t down to t_next < t; returns (x_next, x0_pred), both shaped like x_t.

    x_next = x_t + (t_next - t) v; x0_pred = x_t - t v is where the straight line through x_t with velocity v
    meets t = 0 (exact if the path from x_t to the data were the straight line of training).
    """
    return x_t + (t_next - t) * v, x_t - t * v


@torch.inference_mode()
def flow_sample_loop(velocity: VelocityFn, x1: torch.Tensor, steps: int) -> Iterator[Frame]:
    """Euler from x_1 = noise (B, ...) to t = 0: one Frame per step. Frame.t is the (float) time of the step's
    network call, Frame.x_t the state after the step (at the next time), Frame.x0_pred the straight-line x_0."""
    times = euler_times(steps)
    x = x1
    for t, t_next in zip(times[:-1], times[1:]):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.float32, device=x.device)   # (B,)
        x, x0 = euler_step(velocity(x, t_batch), t, t_next, x)
        yield Frame(t=t, x_t=x, x0_pred=x0)


class FlowMatching(nn.Module):
    """Wraps `model(x_t, t, labels=None)` as a velocity field v_theta(x_t, t) = model(x_t, t * time_scale).

    data_shape: shape of one item ((2,) for the toys); time_scale: what continuous t in [0, 1] is multiplied by
    before the network's timestep embedding; sampling_steps: Euler steps of `sample` (the Trainer's sample grids);
    auto_normalize: map images from [0, 1] to [-1, 1] (off for the toys). image_size and channels are only read by
    the Trainer to resolve an image folder.
    """

    def __init__(self, model: nn.Module, data_shape: tuple[int, ...] = (2,), time_scale: float = 1000.0,
                 sampling_steps: int = 50, auto_normalize: bool = False, image_size: int = 28, channels: int = 1):
        super().__init__()
        self.model = model
        self.data_shape, self.time_scale, self.sampling_steps = tuple(data_shape), float(time_scale), sampling_steps
        self.auto_normalize, self.image_size, self.channels = auto_normalize, image_size, channels
        # "type" tells a checkpoint's loader (load_flow, ddpm.pretrained) that this is not a GaussianDiffusion
        self.config = dict(type="FlowMatching", data_shape=list(self.data_shape), time_scale=self.time_scale,
                           sampling_steps=sampling_steps, auto_normalize=auto_normalize, image_size=image_size,
                           channels=channels)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """v_theta(x_t, t): x_t (B, ...), continuous t (B,) in [0, 1] -> (B, ...)."""
        return self.model(x_t, t * self.time_scale, labels=labels)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The flow-matching loss (Eq. 1) for a batch of data x (B, ...); random draws from `generator`."""
        x0 = x * 2 - 1 if self.auto_normalize else x                               # (B, ...)
        B, dev = x0.shape[0], x0.device
        gen_dev = generator.device if generator is not None else dev
        t = torch.rand(B, generator=generator, device=gen_dev).to(dev)             # (B,), t ~ U[0, 1)
        eps = torch.randn(x0.shape, generator=generator, device=gen_dev).to(dev)   # (B, ...), eps ~ N(0, I)
        x_t = flow_interpolate(x0, eps, t)                                          # (B, ...)
        v = self.velocity(x_t, t, labels).float()                                  # float32 loss under autocast
        return F.mse_loss(v, flow_target(x0, eps))                                 # mean over batch and dims

    @torch.inference_mode()
    def sample(self, batch_size: int = 16, labels: torch.Tensor | None = None, guidance_scale: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """`sampling_steps` Euler steps from noise: (B, *data_shape) (images in [0, 1] if auto_normalize).
        labels / guidance_scale are accepted for the Trainer's sake; labels go to the network as they are."""
        gen_dev = generator.device if generator is not None else self.device
        x = torch.randn((batch_size, *self.data_shape), generator=generator, device=gen_dev).to(self.device)
        for frame in flow_sample_loop(lambda x, t: self.velocity(x, t, labels), x, self.sampling_steps):
            x = frame.x_t
        return (x.clamp(-1, 1) + 1) / 2 if self.auto_normalize else x


def is_flow_config(config: dict) -> bool:
    """True for a checkpoint's JSON written from a FlowMatching (the Trainer stores it under "diffusion")."""
    return config.get("diffusion", {}).get("type") == "FlowMatching"


def load_flow(stem: str | Path, use_ema: bool = True, device: str | torch.device = "cpu") -> FlowMatching:
    """A FlowMatching with trained weights from `stem`.{safetensors,json}: EMA weights by default."""
    tensors, config = load_checkpoint(stem, device)
    if not is_flow_config(config):
        raise ValueError(f"{stem} is not a flow-matching checkpoint")
    d = {k: v for k, v in config["diffusion"].items() if k != "type"}
    flow = FlowMatching(build_model(config["model"]), **d).to(device)
    prefix = "ema" if use_ema and any(k.startswith("ema.") for k in tensors) else "model"
    flow.model.load_state_dict(unprefixed(prefix, tensors))
    return flow.eval()


@dataclass
class FlowPipeline:
    """A shipped flow-matching model ready to sample, with the DDPM Pipeline's `sample` / `progressive`."""

    name: str
    model: nn.Module
    time_scale: float
    data_shape: tuple[int, ...]
    device: torch.device
    precision: str = "float32"      # "bfloat16": the network under autocast, as for the DDPM pipelines
    default_steps: int = 50
    classes: list[str] | None = None
    prediction: str = "velocity"

    is_image = False

    @property
    def network(self) -> nn.Module:
        from .pretrained import Autocast                 # here, not at the top: pretrained imports this module
        return Autocast(self.model) if self.precision == "bfloat16" else self.model

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v_theta(x, t) for continuous t (B,) in [0, 1]: x (B, 2) -> (B, 2)."""
        return self.network(x, t * self.time_scale, labels=None)

    def initial_noise(self, n: int, seed: int = 0) -> torch.Tensor:
        """x_1 ~ N(0, I), (n, *data_shape): the same draw as a DDPM Pipeline's x_T for the same seed."""
        return torch.randn((n, *self.data_shape), generator=torch.Generator().manual_seed(int(seed))).to(self.device)

    def progressive(self, n: int = 16, steps: int | None = None, seed: int = 0, sampler: str = "euler",
                    x_T: torch.Tensor | None = None) -> Iterator[Frame]:
        """Yield one Frame(t, x_t, x0_pred) per Euler step from t = 1 to 0 (t: float, the time of the call;
        x0_pred = x_t - t v_theta, x_t here being the state the call saw). x_T: this starting noise."""
        steps = self.default_steps if steps is None else steps
        if not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 20000):
            raise ValueError(f"n must be an integer between 1 and 20000, got {n!r}")
        if sampler != "euler":
            raise ValueError(f"unknown sampler {sampler!r} for a flow model; choose euler")
        euler_times(steps)                                                   # checks steps
        x = self.initial_noise(n, seed) if x_T is None else x_T.to(self.device)
        yield from flow_sample_loop(self.velocity, x, steps)

    def sample(self, n: int = 16, **kwargs) -> torch.Tensor:
        """The final points (n, 2). Same arguments as progressive."""
        frame = None
        for frame in self.progressive(n, **kwargs):
            pass
        return frame.x_t


def load_flow_pipeline(name: str, stem: str | Path, device: torch.device) -> FlowPipeline:
    """The FlowPipeline of a flow checkpoint (what `ddpm.load_pretrained` returns for `<toy>-flow`)."""
    flow = load_flow(stem, use_ema=True, device=device)
    sampling = json.loads(Path(str(stem) + ".json").read_text()).get("sampling", {})
    return FlowPipeline(name=name, model=flow.model.requires_grad_(False), time_scale=flow.time_scale,
                        data_shape=flow.data_shape, device=torch.device(device),
                        default_steps=sampling.get("steps", 50))
