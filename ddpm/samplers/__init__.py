"""Samplers: one step rule per file (ddpm.py, ddim.py) and the loop that drives them (loop.py)."""
from .ddim import ddim_step
from .ddpm import VARIANCES, ddpm_step
from .loop import SAMPLERS, Frame, guided, sample_loop, timesteps_for

__all__ = ["ddpm_step", "ddim_step", "Frame", "guided", "sample_loop", "timesteps_for", "SAMPLERS", "VARIANCES"]
