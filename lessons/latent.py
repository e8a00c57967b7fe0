"""Tab 5 · Latent diffusion, how Stable Diffusion does it: encode, noise in latent space, the reverse run in latent
space beside the pixel model, and prompts / negative prompts (here: class names).

The maths is `ddpm`'s: `LatentPipeline.encode / decode / progressive` (ddpm/latent.py) and `q_sample` (Eq. 4).
Moving t stays in the browser (lessons/static/stage.js, `ddpm.latent`): it combines x_0, z_0, the two fixed
noises and the schedule's tables, and flips through decodings D(z_t) that the server computed once per image.
"""
from __future__ import annotations

import time
from typing import Iterator

import gradio as gr
import numpy as np
import torch

from ddpm import q_sample
from ddpm.pretrained import MAX_GUIDANCE, load_pretrained

from . import stage
from .common import LATEX, image_picker, lang_input, noise_like, number
from .i18n import Text, class_name, lesson, tr

MODEL, PIXEL = "fashion-mnist-latent", "fashion-mnist"
T_STEP = 5                      # decodings D(z_t) for t = 0, 5, ..., 995: the slider's grid (200 frames, 157 kB)
MAX_N = 8
# a prompt here is a class name: English, Chinese, or a few everyday words for the same thing
CLASS_WORDS = {
    "T-shirt/top": ["t-shirt/top", "t-shirt", "tshirt", "tee", "top", "t恤", "t 恤", "上衣", "短袖"],
    "Trouser": ["trouser", "trousers", "pants", "jeans", "裤子", "长裤"],
    "Pullover": ["pullover", "sweater", "jumper", "套头衫", "毛衣"],
    "Dress": ["dress", "连衣裙", "裙子"],
    "Coat": ["coat", "jacket", "外套", "大衣"],
    "Sandal": ["sandal", "sandals", "凉鞋"],
    "Shirt": ["shirt", "衬衫"],
    "Sneaker": ["sneaker", "sneakers", "trainer", "trainers", "运动鞋", "球鞋"],
    "Bag": ["bag", "handbag", "包", "手提包", "包包"],
    "Ankle boot": ["ankle boot", "ankle boots", "boot", "boots", "短靴", "踝靴", "靴子"],
}


def pipe():
    return load_pretrained(MODEL, precision="auto")


def parse_prompt(prompt, what: str = "prompt") -> str | None:
    """A typed prompt -> the class it names (English or Chinese, any case), None for an empty one, else gr.Error."""
    words = str(prompt or "").strip().lower().strip("。.!！ ")
    if not words:
        return None
    for c, names in CLASS_WORDS.items():
        if words in names or words == c.lower():
            return c
    raise gr.Error(f"{what} {str(prompt)[:60]!r}: here a prompt is one class name, such as "
                   f"{', '.join(CLASS_WORDS)} (or 运动鞋, 短靴, …)")


# ---- encode + noise in latent space: the stage's data, sent once per image ---------------------------------
def _x0(image) -> torch.Tensor:
    from .reverse import to_model_image
    return to_model_image(image)                                                # (1, 1, 28, 28) in [0, 1]


def stage_data(image=None, t: int = 500, seed: int = 0, lang: str = "en") -> dict:
    """x_0, its reconstruction and error, z_0 = E(x_0), the two fixed noises, the schedule's tables and D(z_t) for
    t on the T_STEP grid: what stage.js needs to scrub t without asking again."""
    p = pipe()
    t = number(t, "t", 0, p.timesteps - 1, integer=True)
    seed = number(seed, "seed", 0, 2 ** 31 - 1, integer=True)
    x0 = _x0(image)
    z0 = p.encode(x0)                                                           # (1, 4, 7, 7), scaled
    rec = p.decode(z0)                                                          # (1, 1, 28, 28) in [0, 1]
    eps_x, eps_z = noise_like(x0, seed), noise_like(z0, seed + 1)
    ts = list(range(0, p.timesteps, T_STEP))
    z_t = q_sample(p.schedule, z0.expand(len(ts), -1, -1, -1), torch.tensor(ts), eps_z.expand(len(ts), -1, -1, -1))
    frames = (p.decode(z_t) * 255).round().to(torch.uint8)                      # (200, 1, 28, 28): D(z_t), Eq. 4
    mse = (rec - x0).pow(2).mean().item()
    labels = {k: tr(f"latent.{k}", lang) for k in ("x0", "z0", "rec", "err", "xt", "zt", "dzt", "cite")}
    labels["numbers"] = tr("latent.numbers", lang).format(mse=mse, psnr=10 * np.log10(1 / max(mse, 1e-12)))
    return {"T": p.timesteps, "t": t, "step": T_STEP, "x0": stage.image(x0 * 2 - 1), "eps": stage.image(eps_x),
            "rec": stage.image(rec * 2 - 1), "err": stage.image((rec - x0).abs() * 2 - 1),
            "z0": stage.image(z0), "eps_z": stage.image(eps_z), "frames": stage.b64(frames, np.uint8),
            "tables": stage.tables(p.schedule), "labels": labels}


def first_stage(shown, image=None, t: int = 500, seed: int = 0, lang: str = "en"):
    """When the tab is opened: the stage's data unless the page has it already (`shown`: what it holds). Nothing is
    computed or sent for a learner who never opens the tab (it is ~0.3 MB, and a class opens the page at once)."""
    return gr.skip() if shown else stage_data(image, t, seed, lang)


def relabel(image, t, seed, lang: str = "en") -> dict:
    """The language switch: the same data with captions in the new language (bad input: nothing changes)."""
    try:
        return stage_data(image, t, seed, lang)
    except gr.Error:
        return gr.skip()


# ---- reverse in latent space, beside the pixel model ------------------------------------------------------
def _grid(images: torch.Tensor) -> np.ndarray:
    from .reverse import grid_picture
    return grid_picture(images, size=224)


def _channels(z: torch.Tensor) -> np.ndarray:
    """(n, 4, 7, 7) latents -> one picture: a row of 4 channels per image, z / 3 mapped to grey (like eps)."""
    v = (z.clamp(-3, 3) / 6 + 0.5).reshape(-1, 1, 7, 7)                         # (n * 4, 1, 7, 7)
    from ddpm.images import make_grid
    g = make_grid(v, nrow=4, pad=1, pad_value=40)
    g = np.repeat(g, 3, axis=2)
    return np.repeat(np.repeat(g, 8, 0), 8, 1)


def check(prompt, negative, guidance_scale, steps, seed, n) -> dict:
    label, neg = parse_prompt(prompt), parse_prompt(negative, "negative prompt")
    return dict(labels=None if label is None else [label], negative_labels=None if neg is None else [neg],
                guidance_scale=number(guidance_scale, "guidance scale", 0, MAX_GUIDANCE),
                steps=number(steps, "steps", 1, 200, integer=True), seed=number(seed, "seed", 0, 2 ** 31 - 1, integer=True),
                n=number(n, "n (images)", 1, MAX_N, integer=True))


def generate(prompt: str = "sneaker", negative: str = "", guidance_scale: float = 3.0, steps: int = 50, seed: int = 0,
             n: int = 4, lang: str = "en") -> Iterator[tuple]:
    """Stream the latent model and the pixel model side by side, step by step, on the same prompt, seed and steps:
    (latent x_t, latent x0-hat, z_t channels, pixel x_t, pixel x0-hat, cost Markdown). The API's /latent."""
    a = check(prompt, negative, guidance_scale, steps, seed, n)
    lat, pix = pipe(), load_pretrained(PIXEL, precision="auto")

    def compute():
        t0 = time.perf_counter()
        lat.decode(torch.zeros(a["n"], 4, 7, 7))                      # one decode of n latents, timed once a run
        dec = 1000 * (time.perf_counter() - t0)
        gens = {"latent": lat.progressive(**a), "pixel": pix.progressive(**a)}
        spent, frames = {"latent": 0.0, "pixel": 0.0}, {}
        for i in range(1, a["steps"] + 1):
            for name, gen in gens.items():
                t0 = time.perf_counter()
                frames[name] = next(gen)
                spent[name] += time.perf_counter() - t0
            fl, fp = frames["latent"], frames["pixel"]
            # only the newest update reaches the browser (lessons/runs.py): pictures are made for every step,
            # cheaply (16 small grids), so that the last one is always the final one
            yield (_grid(fl.x_t), _grid(fl.x0_pred), _channels(fl.z_t), _grid(fp.x_t), _grid(fp.x0_pred),
                   cost_table(spent, i, a, dec, lang))
    # in the app's lanes with the Reverse tab's runs (two models: twice the pixel model's estimate)
    from .reverse import LONG_SECONDS, RUNS, cost_seconds
    from ddpm.samplers import timesteps_for
    ts = timesteps_for("ddim", a["steps"], pix.timesteps)
    est = 2 * cost_seconds(pix, {**a, "guidance_interval": None}, ts)
    yield from RUNS.in_lane(compute, "long" if est > LONG_SECONDS else "short")


def cost_table(spent: dict, i: int, a: dict, dec: float, lang: str = "en") -> str:
    """Dimensions, time per step and total time of both runs so far, and `dec` ms for one decode of the run's
    n latents, all measured in this very run."""
    lat = pipe()
    ms = {k: 1000 * v / i for k, v in spent.items()}
    return tr("latent.cost", lang).format(
        i=i, steps=a["steps"], n=a["n"], d_pix=784, d_lat=int(np.prod(lat.data_shape)),
        p_pix=load_pretrained(PIXEL).num_parameters / 1e6, p_lat=lat.num_parameters / 1e6,
        ms_pix=ms["pixel"], ms_lat=ms["latent"], dec=dec, s_pix=spent["pixel"], s_lat=spent["latent"],
        ratio=spent["pixel"] / max(spent["latent"], 1e-9))


def build(text: Text) -> dict:
    """The stage (encode row, noise row and its t slider; then the prompt and the two streamed runs) beside the
    lesson on Stable Diffusion's real pieces."""
    p = pipe()
    lang = lang_input(text)
    with gr.Row(elem_classes="stage-row"):
        with gr.Column(scale=3, min_width=320, elem_classes="stage-col"):
            gr.HTML(stage.html("latent"), elem_id="latent-html", apply_default_css=False, js_on_load=None)
            t = text.reg(gr.Slider(0, p.timesteps - T_STEP, value=500, step=T_STEP, label=text("t"),
                                   elem_id="latent-t"), label="t")
            with text.reg(gr.Accordion(text("latent.pick"), open=False), label="latent.pick"):
                image, _, source = image_picker(text, "sneaker")
                seed_noise = text.reg(gr.Number(0, precision=0, minimum=0, label=text("seed"), min_width=80),
                                      label="seed")
            text.reg(gr.Markdown(text("latent.reverse_h")), value="latent.reverse_h")
            with gr.Row(equal_height=True):
                prompt = text.reg(gr.Textbox("sneaker", label=text("latent.prompt"), info=text("latent.prompt_info"),
                                             min_width=160, elem_id="latent-prompt"),
                                  label="latent.prompt", info="latent.prompt_info")
                negative = text.reg(gr.Textbox("", label=text("latent.negative"), info=text("latent.negative_info"),
                                               min_width=160, elem_id="latent-negative"),
                                    label="latent.negative", info="latent.negative_info")
            with gr.Row(equal_height=True):
                pick = text.reg_fn(gr.Dropdown([(class_name(c), class_name(c)) for c in p.classes], value=None,
                                               label=text("latent.pick_class"), min_width=140),
                                   lambda lg: dict(label=tr("latent.pick_class", lg),
                                                   choices=[(class_name(c, lg), class_name(c, lg)) for c in p.classes]))
                go = text.reg(gr.Button(text("generate"), variant="primary", min_width=100, elem_id="latent-generate"),
                              value="generate")
            with gr.Row():
                guidance = text.reg(gr.Slider(0, 10, value=3.0, step=0.5, label=text("guidance"), min_width=160),
                                    label="guidance")
                steps = text.reg(gr.Slider(1, 100, value=50, step=1, label=text("steps"), min_width=160), label="steps")
                n = text.reg(gr.Slider(1, MAX_N, value=4, step=1, label=text("n"), min_width=160), label="n")
                seed = text.reg(gr.Number(0, precision=0, minimum=0, label=text("seed"), min_width=80), label="seed")
            with gr.Row():
                l_xt = text.reg(gr.Image(label=text("latent.l_xt"), format="png", interactive=False, height=200,
                                         min_width=120, elem_id="latent-l-xt"), label="latent.l_xt")
                l_x0 = text.reg(gr.Image(label=text("latent.l_x0"), format="png", interactive=False, height=200,
                                         min_width=120), label="latent.l_x0")
                l_z = text.reg(gr.Image(label=text("latent.l_z"), format="png", interactive=False, height=200,
                                        min_width=120), label="latent.l_z")
            with gr.Row():
                p_xt = text.reg(gr.Image(label=text("latent.p_xt"), format="png", interactive=False, height=200,
                                         min_width=120), label="latent.p_xt")
                p_x0 = text.reg(gr.Image(label=text("latent.p_x0"), format="png", interactive=False, height=200,
                                         min_width=120), label="latent.p_x0")
            cost = gr.Markdown(elem_id="latent-cost")
        with gr.Column(scale=2, min_width=300, elem_classes="lesson-col"):
            text.reg(gr.Markdown(lesson("latent", text.lang), latex_delimiters=LATEX), value="lesson:latent")
    data = gr.JSON(visible=False)
    show = "(d) => { window.ddpm && window.ddpm.latent.load(d); }"
    data.change(None, data, None, js=show)
    t.change(None, t, None, js="(t) => { window.ddpm && window.ddpm.latent.show(t); }")
    stage_inputs = [source, t, seed_noise] + lang
    for trigger in (source.change, seed_noise.submit):
        trigger(stage_data, stage_inputs, data, show_progress="hidden", trigger_mode="always_last",
                concurrency_limit=2, concurrency_id="model", api_visibility="private")
    pick.input(lambda c: c, pick, prompt, queue=False, api_visibility="private")
    go.click(generate, [prompt, negative, guidance, steps, seed, n] + lang, [l_xt, l_x0, l_z, p_xt, p_x0, cost],
             api_name="latent", concurrency_limit=2, concurrency_id="model")
    return dict(image=image, t=t, prompt=prompt, negative=negative, guidance=guidance, steps=steps, seed=seed,
                on_select=[(first_stage, [data] + stage_inputs, data)], on_lang=relabel,
                on_lang_io=(stage_inputs, data))
