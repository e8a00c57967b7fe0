"""What the browser's stages need, computed by `ddpm` on the server: tensors and schedule tables as base64.

Moving t happens in the browser (lessons/static/stage.js): the server sends, once per (image, schedule), x_0, the
fixed noise and the schedule's own tables, and the page only multiplies and adds them. Nothing here derives a
formula either: the tables are `ddpm.make_schedule`'s fields, read as they are.

Also: the app's static files (stage.js and the CSS), read once for `launch(head=..., css=...)`.
"""
from __future__ import annotations

import base64
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ddpm import Schedule

STATIC = Path(__file__).resolve().parent / "static"


def b64(x: torch.Tensor | np.ndarray, dtype=np.float32) -> str:
    """A tensor's values, flattened in C order, as base64 of little-endian `dtype` (what JS typed arrays read)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return base64.b64encode(np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def image(x: torch.Tensor) -> dict:
    """(1, C, H, W) or (C, H, W) in [-1, 1] -> {"c", "h", "w", "data": base64 float32 of (C, H, W)}."""
    x = x.reshape(-1, *x.shape[-3:])[0].float()
    c, h, w = x.shape
    return {"c": c, "h": h, "w": w, "data": b64(x)}


# the Schedule fields the pages combine (Eq. 4 and Eq. 7), plus two read-outs for plotting on log axes
FIELDS = ("betas", "alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod", "snr",
          "posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance")


@lru_cache(maxsize=32)
def tables(s: Schedule) -> dict[str, str]:
    """{field: base64 float64 over t = 0..T-1} for the fields in FIELDS, and log SNR / log10 of the two
    variances for the charts. Cached per schedule (the sliders' schedules come from a cache too)."""
    out = {name: b64(getattr(s, name), np.float64) for name in FIELDS}
    with np.errstate(divide="ignore"):
        out["log_snr"] = b64(np.log(s.snr.numpy()), np.float64)
        out["log10_betas"] = b64(np.log10(s.betas.numpy()), np.float64)
        out["log10_posterior_variance"] = b64(np.log10(s.posterior_variance.numpy()), np.float64)
    return out


@lru_cache(maxsize=1)
def head() -> str:
    """<script> of the stages, for `launch(head=...)`."""
    return f"<script>\n{(STATIC / 'stage.js').read_text(encoding='utf-8')}\n</script>"


def css() -> str:
    return (STATIC / "app.css").read_text(encoding="utf-8")


def html(name: str) -> str:
    """The markup of a stage: lessons/static/<name>.html."""
    return (STATIC / f"{name}.html").read_text(encoding="utf-8")
