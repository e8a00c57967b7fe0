"""ddpm: Denoising Diffusion Probabilistic Models (Ho et al. 2020) and their descendants, small enough to read.

Every formula lives in exactly one function, named as in the paper; the app and the tests call these.
"""
from .checkpoint import load_diffusion
from .diffusion import GaussianDiffusion
from .distances import energy_distance, sliced_wasserstein
from .flow import FlowMatching, FlowPipeline, euler_step
from .forward import q_mean_variance, q_sample
from .posterior import predict_eps, predict_x0, q_posterior
from .pretrained import Pipeline, load_pretrained
from .samplers import Frame, ddim_step, ddpm_step, guided, sample_loop
from .schedules import SCHEDULES, Schedule, make_schedule, sampling_timesteps
from .toy import TOYS, ToyMLP, make_toy
from .trainer import Trainer
from .unet import UNet
from .vlb import vlb_terms

__all__ = ["make_schedule", "Schedule", "SCHEDULES", "sampling_timesteps", "q_sample", "q_mean_variance",
           "q_posterior", "predict_x0", "predict_eps", "ddpm_step", "ddim_step", "Frame", "guided", "sample_loop",
           "GaussianDiffusion", "Trainer", "UNet", "ToyMLP", "make_toy", "TOYS", "load_diffusion",
           "load_pretrained", "Pipeline", "vlb_terms", "FlowMatching", "FlowPipeline", "euler_step",
           "energy_distance", "sliced_wasserstein"]
