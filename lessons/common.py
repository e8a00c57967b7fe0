"""Helpers every tab shares: checking arguments, reading images safely, turning tensors into pictures.

Handlers raise `gr.Error` with a plain message for bad input; the server keeps serving.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from gradio.components.plot import PlotData

from ddpm import SCHEDULES, Schedule, make_schedule
from ddpm.schedules import ABAR_SCHEDULES
from ddpm.data import image_to_tensor

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
MAX_T = 4000                  # longest schedule the sliders offer
MAX_PIXELS = 40_000_000       # refuse bigger uploads before decoding them (a 12000x12000 image is 144M)
WORK_SIZE = 128               # uploads are centre-cropped and resized to this for the lessons
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


def example_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.glob("*.png"))


def example_path(name: str) -> str:
    return str(EXAMPLES / f"{name}.png")


def number(value, name: str, lo: float, hi: float, integer: bool = False) -> float | int:
    """A finite number in [lo, hi] (ints for integer=True), else a gr.Error naming the parameter."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise gr.Error(f"{name} must lie in [{lo:g}, {hi:g}], got {value!r}")
    if integer:
        if v != int(v):
            raise gr.Error(f"{name} must be a whole number, got {value!r}")
        return int(v)
    return v


def choice(value, name: str, options) -> str:
    if value not in options:
        raise gr.Error(f"unknown {name} {value!r}; choose one of: {', '.join(map(str, options))}")
    return value


@lru_cache(maxsize=64)
def _schedule(kind: str, T: int, beta_start: float, beta_end: float) -> Schedule:
    return make_schedule(kind, T, beta_start, beta_end)


def schedule_from(kind, timesteps, beta_start, beta_end) -> Schedule:
    """Validated, cached schedule: sliders call this dozens of times a second."""
    kind = choice(kind, "schedule", SCHEDULES)
    T = number(timesteps, "timesteps (T)", 2, MAX_T, integer=True)
    b0 = number(beta_start, "beta_start", 1e-6, 0.999)
    b1 = number(beta_end, "beta_end", 1e-6, 0.999)
    if kind not in ABAR_SCHEDULES and b0 > b1:
        raise gr.Error(f"beta_start ({b0:g}) must not exceed beta_end ({b1:g})")
    return _schedule(kind, T, b0, b1)


def timestep(t, schedule: Schedule) -> int:
    return number(t, "t", 0, schedule.timesteps - 1, integer=True)


@lru_cache(maxsize=32)
def _load_file(path: str, mtime: float) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            w, h = img.size                                   # header only: nothing decoded yet
            if w * h > MAX_PIXELS:
                raise gr.Error(f"image too large ({w}x{h}); the limit is {MAX_PIXELS // 1_000_000} megapixels")
            img.draft("RGB", (WORK_SIZE * 2, WORK_SIZE * 2))  # JPEG: decode at reduced size, fast
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):   # 16-bit greyscale: scale down to 8 bits
                arr = np.asarray(img, dtype=np.float64)
                img = Image.fromarray((arr / max(arr.max(), 1) * 255).astype(np.uint8))
            if img.mode in ("RGBA", "LA", "P", "PA"):         # flatten transparency onto white
                rgba = img.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(bg, rgba)
            rgb = img.convert("RGB")
            grey = np.ptp(np.asarray(rgb, dtype=np.int16)[..., :3] - np.asarray(rgb.convert("L"))[..., None]) < 3
            x = image_to_tensor(rgb, None if max(w, h) <= 28 else WORK_SIZE, 1 if grey else 3)
    except gr.Error:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise gr.Error(f"could not read the image: {type(e).__name__}: {e}"[:300]) from None
    if x.shape[-1] != x.shape[-2]:                            # small non-square images: square them
        x = image_to_tensor(Image.fromarray((x.permute(1, 2, 0).squeeze(-1).numpy() * 255).astype(np.uint8)), 28,
                            x.shape[0])
    return x * 2 - 1                                          # (C, S, S) in [-1, 1]


def load_image(image) -> torch.Tensor:
    """An upload (path or file object), an example name, or None (default example) -> (1, C, S, S) in [-1, 1].

    Greyscale stays 1 channel, colour 3; big images are centre-cropped and resized to WORK_SIZE.
    """
    if image is None or image == "":
        image = "sneaker"
    path = getattr(image, "name", None) or (image.get("path") if isinstance(image, dict) else image)
    path = str(path)
    if path in example_names():
        path = example_path(path)
    p = Path(path)
    if not p.is_file():
        raise gr.Error(f"no such image or example: {str(image)[:100]!r}")
    return _load_file(str(p), p.stat().st_mtime).unsqueeze(0)


def to_picture(x: torch.Tensor, size: int = 224) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) in [-1, 1] -> (size, size, 3) uint8, nearest-neighbour so pixels stay crisp."""
    x = x.reshape(-1, *x.shape[-3:])[0].float()
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().byte()
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    arr = x.permute(1, 2, 0).numpy()
    reps = max(1, size // arr.shape[0])
    return np.repeat(np.repeat(arr, reps, 0), reps, 1)


def strip(images: list[torch.Tensor], size: int = 96, pad: int = 4) -> np.ndarray:
    """A horizontal filmstrip of (C, H, W) images in [-1, 1], white gaps between."""
    pics = [to_picture(x, size) for x in images]
    h = max(p.shape[0] for p in pics)
    out = np.full((h, sum(p.shape[1] for p in pics) + pad * (len(pics) - 1), 3), 255, np.uint8)
    x = 0
    for p in pics:
        out[: p.shape[0], x: x + p.shape[1]] = p
        x += p.shape[1] + pad
    return out


def noise_like(x0: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The same eps for the same image shape and seed, so moving t changes only the mix, not the noise."""
    return torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed)))


def plain_figure(fig) -> dict:
    """A plotly go.Figure -> a plain JSON-safe dict {"data": [...], "layout": {...}}; numpy arrays stay in
    plotly's compact typed-array form {"dtype", "bdata"}, which plotly.js reads as it is."""
    return json.loads(fig.to_json())


def plot_data(fig: dict) -> PlotData:
    """A plain figure dict -> what gr.Plot sends to the browser (Plotly JSON).

    Why not return a go.Figure: plotly validates every property as the figure is built, ~100 ms for the
    forward tab's three panels, and a dragged t slider asks for a figure per tick. So the tabs build the
    parts that do not move with t once per schedule with plotly (cached, as plain dicts) and add the
    t marker as a few small dicts here: ~1 ms."""
    return PlotData(type="plotly", plot=json.dumps(fig))


def fmt(v: float) -> str:
    """A coefficient for a formula: 5 decimals, scientific when tiny."""
    v = float(v)
    return f"{v:.5f}" if v == 0 or abs(v) >= 1e-3 else f"{v:.4e}"


def lang_input(text) -> list:
    """[the app's language State] to append to a handler's inputs (it fills the handler's trailing `lang`
    parameter), or [] when the tab is built without one (the handler then writes English)."""
    return [] if text.state is None else [text.state]


def t_slider_follows_T(T, t):
    """When T changes, the t slider's range becomes [0, T-1] (and t is kept inside it)."""
    try:
        top = max(1, int(T) - 1)
    except (TypeError, ValueError):
        return gr.update()
    return gr.update(maximum=top, value=min(int(t), top))


def image_picker(text, default: str):
    """A gallery of the shipped examples, an example dropdown (what deep links set) and an upload box,
    all feeding one State: the image the tab shows. Returns (dropdown, upload, source_state)."""
    names = example_names()
    gallery = gr.Gallery([(example_path(n), n) for n in names], columns=5, height="auto", elem_classes="example-gallery", allow_preview=False,
                         show_label=False, container=False, object_fit="contain")
    image = text.reg(gr.Dropdown(names, value=default, label=text("image")), label="image")

    def pick(evt: gr.SelectData) -> str:
        return names[evt.index]
    gallery.select(pick, None, image, queue=False, api_visibility="private")
    upload = text.reg(gr.File(file_types=["image"], label=text("upload"), height=120), label="upload")
    source = gr.State(default)
    image.change(lambda name: name, image, source, queue=False, api_visibility="private")
    upload.upload(lambda f: f, upload, source, queue=False, api_visibility="private")
    return image, upload, source


def schedule_settings(text, t):
    """The schedule's kind, T, beta_start and beta_end, in two rows; the slider `t` follows T.
    Call inside a Column; returns (kind, T, beta_start, beta_end)."""
    with gr.Row():
        kind = text.reg(gr.Dropdown(list(SCHEDULES), value="linear", label=text("schedule"), min_width=120),
                        label="schedule")
        T = text.reg(gr.Number(1000, precision=0, label=text("timesteps"), min_width=100), label="timesteps")
    with gr.Row():
        b0 = text.reg(gr.Number(1e-4, label=text("beta_start"), min_width=100), label="beta_start")
        b1 = text.reg(gr.Number(0.02, label=text("beta_end"), min_width=100), label="beta_end")
    T.change(t_slider_follows_T, [T, t], t, queue=False, api_visibility="private")
    return kind, T, b0, b1
