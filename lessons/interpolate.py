"""Reverse tab · Interpolation (Ho et al. 2020, Sec. 4.3, Fig. 8): two images noised to t with the same noise,
mixed with lambda, denoised by the pixel model. `ddpm.Pipeline.interpolate` does the maths; this lays it out."""
from __future__ import annotations

import gradio as gr
import numpy as np
import torch

from ddpm.samplers import timesteps_for

from .common import LATEX, example_names, number
from .i18n import Text, lesson, tr

MODEL = "fashion-mnist"          # the pixel model: interpolation mixes pixels' noisy versions
ROW = 7                          # lambda = 0, 1/6, ..., 1: the row of Fig. 8
FASHION = ["sneaker", "ankle-boot", "sandal", "trouser", "tshirt", "dress", "pullover", "coat", "shirt", "bag"]


def _pipe():
    from .reverse import pipe
    return pipe(MODEL)


def _image(name) -> torch.Tensor:
    from .reverse import to_model_image
    if name not in example_names():
        raise gr.Error(f"unknown example {name!r}; choose one of: {', '.join(example_names())}")
    return to_model_image(name)                                             # (1, 1, 28, 28) in [0, 1]


def _big(x: torch.Tensor, size: int = 168) -> np.ndarray:
    """(1, 28, 28) in [0, 1] -> (size, size, 3) uint8, crisp pixels."""
    a = (x.reshape(28, 28).clamp(0, 1) * 255).round().byte().numpy()
    k = size // 28
    return np.repeat(np.repeat(np.stack([a] * 3, -1), k, 0), k, 1)


def _row(images: torch.Tensor, mark: int, size: int = 84, pad: int = 6) -> np.ndarray:
    """(k, 1, 28, 28) -> one strip, the image at index `mark` framed in orange."""
    pics = [_big(x, size) for x in images]
    out = np.full((size + 2 * pad, len(pics) * (size + pad) + pad, 3), 255, np.uint8)
    for i, p in enumerate(pics):
        x0 = pad + i * (size + pad)
        if i == mark:
            out[pad - 4: pad + size + 4, x0 - 4: x0 + size + 4] = (249, 115, 22)
        out[pad: pad + size, x0: x0 + size] = p
    return out


def interpolate(image_a: str = "sneaker", image_b: str = "ankle-boot", t: int = 500, lam: float = 0.5,
                seed: int = 0, lang: str = "en") -> tuple:
    """(x_a | noisy mix x_bar_t | result at lam, the row over lambda = 0..1 at this t, note)."""
    p = _pipe()
    t = number(t, "t", 1, p.timesteps - 1, integer=True)
    lam = number(lam, "lambda", 0, 1)
    seed = number(seed, "seed", 0, 2 ** 31 - 1, integer=True)
    x_a, x_b = _image(image_a), _image(image_b)
    lams = [i / (ROW - 1) for i in range(ROW)]
    mark = min(range(ROW), key=lambda i: abs(lams[i] - lam))
    if abs(lams[mark] - lam) > 1e-6:                   # lam between two of the row's values: add it
        lams.append(lam)
    out = p.interpolate(x_a, x_b, t, lams, seed=seed)                               # (k, 1, 28, 28)
    mix, _ = p.interpolation_start(x_a, x_b, t, lam, seed)                         # where its chain starts
    shown = out[-1] if len(lams) > ROW else out[mark]
    trio = np.concatenate([_big(x_a), np.full((168, 8, 3), 255, np.uint8), _big(p.from_model_space(mix)),
                           np.full((168, 8, 3), 255, np.uint8), _big(shown), np.full((168, 8, 3), 255, np.uint8),
                           _big(x_b)], 1)
    steps = len(timesteps_for("ddim", p.default_steps, p.timesteps, t, p.spacing))
    note = tr("interp.note", lang).format(t=t, lam=lam, steps=steps, seed=seed)
    return trio, _row(out[:ROW], mark), note


def build(text: Text, seed) -> None:
    """The accordion under the Reverse stage: two garments, t and lambda, the result and the row of Fig. 8."""
    names = [n for n in FASHION if n in example_names()]
    with text.reg(gr.Accordion(text("interp.title"), open=False, elem_id="interp"), label="interp.title") as box:
        with gr.Row():
            with gr.Column(scale=3, min_width=300):
                trio = text.reg(gr.Image(label=text("interp.trio"), format="png", interactive=False, height=200,
                                         elem_id="interp-trio"), label="interp.trio")
                row = text.reg(gr.Image(label=text("interp.row"), format="png", interactive=False, height=120),
                               label="interp.row")
                note = gr.Markdown(elem_id="interp-note")
                with gr.Row():
                    a = text.reg(gr.Dropdown(names, value="sneaker", label=text("interp.a"), min_width=140),
                                 label="interp.a")
                    b = text.reg(gr.Dropdown(names, value="ankle-boot", label=text("interp.b"), min_width=140),
                                 label="interp.b")
                with gr.Row():
                    t = text.reg(gr.Slider(1, 999, value=500, step=1, label=text("interp.t"), min_width=200,
                                           elem_id="interp-t"), label="interp.t")
                    lam = text.reg(gr.Slider(0, 1, value=0.5, step=0.05, label=text("interp.lam"), min_width=200,
                                             elem_id="interp-lam"), label="interp.lam")
            with gr.Column(scale=2, min_width=280):
                text.reg(gr.Markdown(lesson("interpolate", text.lang), latex_delimiters=LATEX),
                         value="lesson:interpolate")
    inputs = [a, b, t, lam, seed] + ([text.state] if text.state is not None else [])
    # ~0.1-0.3 s per change on 2 cores (8 images, DDIM steps in proportion to t): computed on release
    box.expand(interpolate, inputs, [trio, row, note], show_progress="hidden", concurrency_limit=2,
               concurrency_id="model", api_name="interpolate")
    for trigger in (a.change, b.change, t.release, lam.release):
        trigger(interpolate, inputs, [trio, row, note], show_progress="hidden", concurrency_limit=2,
                concurrency_id="model", api_visibility="private")
