"""Tab 3 · Reverse process: the shipped model turns TV snow into clothes, one streamed step at a time."""
from __future__ import annotations

import math
import tempfile
import time
from typing import Iterator

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from ddpm.images import make_grid
from ddpm.pretrained import MAX_GUIDANCE, load_pretrained

from .common import LATEX, image_picker, load_image, number
from . import predict
from .i18n import Text, lesson, tr

# The shipped Fashion-MNIST models, the app's default first (assets/models/MODEL_CARD.md): the small
# one is distilled from the large one and is what a 2-core CPU can run in a few seconds.
MODELS = ("fashion-mnist", "fashion-mnist-large")
MODEL = MODELS[0]
MAX_N = 16                # images per request: one user cannot starve the others
MAX_STORED = 200          # frames kept for the scrubber and the GIF
STREAM_EVERY = 0.08       # seconds between streamed updates (a long DDPM run would flood the browser)
SAMPLERS = {"ddim": ("ddim", "fixed_small"), "ddpm": ("ddpm", "fixed_small"), "ddpm_large": ("ddpm", "fixed_large")}


def pipe(model: str = MODEL):
    if model not in MODELS:
        raise gr.Error(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    # "auto": bfloat16 autocast on CPUs that do it natively (~1.7x faster, same images to the eye:
    # the Fréchet distance in bench/RESULTS.md is unchanged), float32 elsewhere
    return load_pretrained(model, precision="auto")


def model_choices() -> list[tuple[str, str]]:
    """(label, name) per model: its name and size in millions of parameters, e.g. "fashion-mnist · 0.28 M"."""
    return [(f"{m} · {pipe(m).num_parameters / 1e6:.2f} M", m) for m in MODELS]


def sampler_choices(lang: str = "en") -> list[tuple[str, str]]:
    return [("DDIM", "ddim"), ("DDPM · σ²=β̃ (fixed_small)", "ddpm"), ("DDPM · σ²=β (fixed_large)", "ddpm_large")]


def grid_picture(images: torch.Tensor, size: int = 336) -> np.ndarray:
    """(n, 1, 28, 28) in [0, 1] -> a square-ish grid, enlarged with nearest-neighbour to about `size` px."""
    g = make_grid(images, nrow=math.ceil(math.sqrt(images.shape[0])), pad=1, pad_value=40)   # (H, W, 1)
    g = np.repeat(g, 3, axis=2) if g.shape[2] == 1 else g
    k = max(1, size // g.shape[1])
    return np.repeat(np.repeat(g, k, 0), k, 1)


def default_guidance_until(model: str = MODEL) -> int:
    """The guidance slider's partner: guide only while t <= this (the model's tuned interval; T-1 = always)."""
    p = pipe(model)
    return p.guidance_interval[1] if p.guidance_interval else p.timesteps - 1


def check(label, sampler, steps, eta, guidance_scale, seed, n, guidance_until=None, model=MODEL) -> dict:
    """Turn the UI/API values into Pipeline.progressive's arguments, or raise gr.Error."""
    p = pipe(model)
    until = default_guidance_until(model) if guidance_until is None else \
        number(guidance_until, "guide while t <=", 0, p.timesteps - 1, integer=True)
    if sampler not in SAMPLERS:
        raise gr.Error(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if label not in ("any", None, "") and label not in p.classes:
        raise gr.Error(f"unknown class {label!r}; choose 'any' or one of: {', '.join(p.classes)}")
    n = number(n, "n (images)", 1, MAX_N, integer=True)
    kind, variance = SAMPLERS[sampler]
    return dict(n=n, sampler=kind, variance=variance, steps=number(steps, "steps", 1, p.timesteps, integer=True),
                eta=number(eta, "eta", 0, 1), guidance_scale=number(guidance_scale, "guidance scale", 0, MAX_GUIDANCE),
                seed=number(seed, "seed", 0, 2 ** 31 - 1, integer=True),
                labels=None if label in ("any", None, "") else [label],
                guidance_interval=None if until == p.timesteps - 1 else (0, until))


def visited(ts: list[int], lang: str = "en") -> str:
    return f"{', '.join(map(str, ts))}" if len(ts) <= 60 else \
        f"{ts[0]}, {ts[1]}, {ts[2]}, …, {ts[-2]}, {ts[-1]}" + tr("msg.all", lang).format(n=len(ts))


def _u8(images: torch.Tensor) -> torch.Tensor:
    """(n, 1, 28, 28) in [0, 1] -> uint8 on the CPU: how a run's frames are kept (12.5 kB for 16 images)."""
    return (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def _snow(x_T: torch.Tensor) -> torch.Tensor:
    """Starting noise x_T ~ N(0, I) -> [0, 1] for display, +-3 sigma spanning black to white."""
    return (x_T.clamp(-3, 3) / 6 + 0.5).cpu()


def _picture(u8: torch.Tensor) -> np.ndarray:
    return grid_picture(u8.float() / 255)


def _stream(frames: Iterator, ts: list[int], n: int, first: torch.Tensor, lang: str = "en") -> Iterator[tuple]:
    """Frames -> (x_t grid, x0 grid, progress Markdown, stored frames, scrub slider update), throttled.
    At most MAX_STORED frames are kept, small (uint8, 28x28 each), and enlarged only when shown."""
    total, stored, t0, last = len(ts), [], time.time(), 0.0
    keep = max(1, math.ceil(total / MAX_STORED))
    stored.append(("start", _u8(first), torch.zeros_like(_u8(first))))
    yield (_picture(stored[0][1]), None, tr("msg.start", lang).format(n=n, total=total, ts=visited(ts, lang)), stored,
           gr.update())
    for i, f in enumerate(frames, 1):
        now = time.time()
        if i % keep == 0 or i == total:
            stored.append((f.t, _u8(f.x_t), _u8(f.x0_pred)))
        if now - last >= STREAM_EVERY or i == total:
            last = now
            bar = "█" * round(20 * i / total) + "░" * (20 - round(20 * i / total))
            msg = f"`{bar}` " + tr("msg.step", lang).format(i=i, total=total, t=f.t, rate=i / (now - t0),
                                                            ts=visited(ts, lang))
            final = i == total
            yield (grid_picture(f.x_t), grid_picture(f.x0_pred), msg, stored,
                   gr.update(maximum=len(stored) - 1, value=len(stored) - 1) if final else gr.update())


def sample(label: str = "any", sampler: str = "ddim", steps: int = 50, eta: float = 0.0, guidance_scale: float = 3.0,
           seed: int = 0, n: int = 16, guidance_until: int | None = None, model: str = MODEL, lang: str = "en"):
    """Stream a reverse run: one update per step (x_t grid, predicted-x_0 grid, progress, ...).
    The last update's first output is the final image grid. The API's /sample.
    guidance_until: guide only while t <= this, plain conditional above (None: the model's default);
    model: one of MODELS."""
    a = check(label, sampler, steps, eta, guidance_scale, seed, n, guidance_until, model)
    p = pipe(model)
    from ddpm.samplers import timesteps_for
    ts = timesteps_for(a["sampler"], a["steps"], p.timesteps)
    x_T = p.initial_noise(a["n"], a["seed"])
    try:
        frames = p.progressive(**a, x_T=x_T)
        yield from _stream(frames, ts, a["n"], _snow(x_T), lang)
    except ValueError as e:
        raise gr.Error(str(e)) from None


def preview(seed: int = 0, n: int = 16, lang: str = "en") -> tuple:
    """Before any run: show the x_T that Generate will start from (same seed, same snow)."""
    seed = number(seed, "seed", 0, 2 ** 31 - 1, integer=True)
    x_T = pipe().initial_noise(number(n, "n (images)", 1, MAX_N, integer=True), seed)
    return _picture(_u8(_snow(x_T))), None, tr("msg.preview", lang).format(seed=seed)


def to_model_image(image) -> torch.Tensor:
    """Any picture -> (1, 1, 28, 28) in [0, 1], the model's format (greyscale, area-downscaled)."""
    x = load_image(image).mean(1, keepdim=True)                                 # (1, 1, S, S) in [-1, 1]
    if x.shape[-1] != 28:
        x = F.interpolate(x, size=(28, 28), mode="area")
    return (x + 1) / 2


def from_image(image=None, start_t: int = 600, label: str = "any", sampler: str = "ddim", steps: int = 50,
               eta: float = 0.0, guidance_scale: float = 3.0, seed: int = 0, n: int = 4,
               guidance_until: int | None = None, model: str = MODEL, lang: str = "en"):
    """SDEdit: noise a real image to start_t with q(x_t | x_0), then run the reverse chain from there."""
    a = check(label, sampler, steps, eta, guidance_scale, seed, n, guidance_until, model)
    p = pipe(model)
    start_t = number(start_t, "start t", 0, p.timesteps - 1, integer=True)
    x0 = to_model_image(image)
    from ddpm import q_sample
    from ddpm.samplers import timesteps_for
    ts = timesteps_for(a["sampler"], a["steps"], p.timesteps, start_t=start_t)
    noisy = q_sample(p.schedule, (x0 * 2 - 1).expand(a["n"], -1, -1, -1), start_t,
                     p.initial_noise(a["n"], a["seed"]).cpu())
    frames = p.progressive(**a, init_image=x0, start_t=start_t)
    yield from _stream(frames, ts, a["n"], ((noisy.clamp(-1, 1) + 1) / 2).float(), lang)


def compare(label: str = "any", steps: int = 50, guidance_scale: float = 3.0, seed: int = 0, n: int = 4,
            guidance_until: int | None = None, model: str = MODEL, lang: str = "en"):
    """DDIM (steps) and DDPM (all T) from the very same x_T: yields (DDIM grid, DDPM grid, note)."""
    a = check(label, "ddim", steps, 0.0, guidance_scale, seed, n, guidance_until, model)
    p = pipe(model)
    x_T = p.initial_noise(a["n"], a["seed"])
    t0 = time.time()
    ddim = p.sample(**a, x_T=x_T)
    t_ddim = time.time() - t0
    yield grid_picture(ddim), None, tr("msg.cmp_start", lang).format(steps=a["steps"], t_ddim=t_ddim, T=p.timesteps)
    a.update(sampler="ddpm")
    t0, last = time.time(), 0.0
    for i, f in enumerate(p.progressive(**a, x_T=x_T), 1):
        if time.time() - last > 0.25 or i == p.timesteps:
            last = time.time()
            yield (grid_picture(ddim), grid_picture(f.x_t),
                   tr("msg.cmp_step", lang).format(steps=a["steps"], t_ddim=t_ddim, T=p.timesteps, i=i,
                                                   elapsed=time.time() - t0))


def scrub(stored: list, k: int, lang: str = "en"):
    """Show stored frame k of the last run."""
    if not stored:
        return None, None, ""
    k = int(min(max(0, k), len(stored) - 1))
    t, xt, x0 = stored[k]
    return _picture(xt), _picture(x0), tr("msg.frame", lang).format(k=k, n=len(stored) - 1, t=t)


def export_gif(stored: list) -> str:
    """The stored frames (x_t | predicted x_0 side by side) as an animated GIF file."""
    from PIL import Image
    if not stored:
        raise gr.Error("nothing to export yet: press Generate first")
    frames = []
    for _, xt, x0 in stored:
        a, b = _picture(xt), _picture(x0)
        frames.append(Image.fromarray(np.concatenate([a, np.full((a.shape[0], 8, 3), 255, np.uint8), b], 1)))
    path = tempfile.NamedTemporaryFile(suffix=".gif", delete=False, prefix="ddpm-run-").name
    frames[0].save(path, save_all=True, append_images=frames[1:] + [frames[-1]] * 10, duration=60, loop=0)
    return path


def build(text: Text) -> dict:
    """The stage (x_t and x0-hat, the class and Generate right under them, then the sampler's settings) beside
    the lesson; starting from a real image and DDPM vs DDIM below."""
    p = pipe()
    with gr.Row(elem_classes="stage-row"):
        with gr.Column(scale=3, min_width=320, elem_classes="stage-col"):
            with gr.Row():
                xt = text.reg(gr.Image(label=text("xt"), format="png", interactive=False, height=300, min_width=150,
                                       elem_id="reverse-xt"), label="xt")
                x0 = text.reg(gr.Image(label=text("pred_x0"), format="png", interactive=False, height=300,
                                       min_width=150), label="pred_x0")
            with gr.Row(equal_height=True):
                label = text.reg_fn(gr.Dropdown([(text("any"), "any")] + [(c, c) for c in p.classes], value="any",
                                                label=text("label"), min_width=140, scale=2),
                                    lambda lang: dict(label=tr("label", lang),
                                                      choices=[(tr("any", lang), "any")] + [(c, c) for c in p.classes]))
                go = text.reg(gr.Button(text("generate"), variant="primary", min_width=100, scale=1,
                                        elem_id="reverse-generate"), value="generate")
                stop = text.reg(gr.Button(text("stop"), variant="stop", min_width=80, scale=1), value="stop")
            progress = gr.Markdown(elem_id="reverse-progress")
            with gr.Row():
                # min_width: on a phone the two wrap onto their own lines instead of squeezing their labels
                guidance = text.reg(gr.Slider(0, 10, value=3.0, step=0.5, label=text("guidance"), min_width=220),
                                    label="guidance")
                until = text.reg(gr.Slider(0, p.timesteps - 1, value=default_guidance_until(), step=1, min_width=220,
                                           label=text("guide_until"), info=text("guide_until_info")),
                                 label="guide_until", info="guide_until_info")
            with gr.Row():
                sampler = text.reg(gr.Dropdown(sampler_choices(), value="ddim", label=text("sampler"), min_width=180),
                                   label="sampler")
                model = text.reg(gr.Radio(model_choices(), value=MODEL, label=text("model"), info=text("model_info"),
                                          min_width=220), label="model", info="model_info")
            with gr.Row():
                steps = text.reg(gr.Slider(1, p.timesteps, value=50, step=1, label=text("steps"), min_width=180),
                                 label="steps")
                eta = text.reg(gr.Slider(0, 1, value=0.0, step=0.05, label=text("eta"), min_width=180), label="eta")
            with gr.Row():
                seed = text.reg(gr.Number(0, precision=0, minimum=0, label=text("seed"), min_width=80), label="seed")
                n = text.reg(gr.Slider(1, MAX_N, value=16, step=1, label=text("n"), min_width=220), label="n")
            frame_k = text.reg(gr.Slider(0, 1, value=0, step=1, label=text("scrub")), label="scrub")
            with gr.Row():
                gif_btn = text.reg(gr.Button(text("gif"), size="sm"), value="gif")
                gif = text.reg(gr.File(label=text("gif_file"), height=60, visible=False), label="gif_file")
        with gr.Column(scale=2, min_width=300, elem_classes="lesson-col"):
            guess = text.reg(gr.Slider(1, 100, value=10, step=1, label=text("predict.guess_steps"), render=False),
                             label="predict.guess_steps")
            strip_img = gr.Image(format="png", interactive=False, show_label=False, render=False, height=110)
            predict.box(text, "reverse", guess, predict.reverse_reveal, [label, seed, model, text.state], [strip_img])
            text.reg(gr.Markdown(lesson("reverse", text.lang), latex_delimiters=LATEX), value="lesson:reverse")
    stored = gr.State([], time_to_live=3600)      # a run's frames, dropped an hour after the last use
    outs = [xt, x0, progress, stored, frame_k]
    # the app's language State is an input too; States are not API parameters, so /sample has 9
    run = go.click(sample, [label, sampler, steps, eta, guidance, seed, n, until, model, text.state], outs,
                   api_name="sample", concurrency_limit=2, concurrency_id="model")
    # each model has its own tuned guidance interval: switching models moves the slider to it
    # (.input, not .change: a deep link that sets both must keep its own guide_until)
    model.input(default_guidance_until, model, until, queue=False, api_visibility="private")
    frame_k.input(scrub, [stored, frame_k, text.state], [xt, x0, progress], show_progress="hidden",
                  api_visibility="private")
    for trigger in (seed.submit, n.release):
        trigger(preview, [seed, n, text.state], [xt, x0, progress], show_progress="hidden", queue=False,
                api_visibility="private")
    gif_btn.click(export_gif, stored, gif, api_visibility="private").success(
        lambda: gr.update(visible=True), None, gif, queue=False, api_visibility="private")

    with text.reg(gr.Accordion(text("from_image"), open=False), label="from_image"):
        with gr.Row():
            with gr.Column(min_width=260):
                image, _, source = image_picker(text, "sneaker")
                start_t = text.reg(gr.Slider(0, p.timesteps - 1, value=600, step=1, label=text("start_t")),
                                   label="start_t")
                go_img = text.reg(gr.Button(text("generate_from_image"), variant="primary"),
                                  value="generate_from_image")
            sd_xt = text.reg(gr.Image(label=text("xt"), format="png", interactive=False, height=280), label="xt")
            sd_x0 = text.reg(gr.Image(label=text("pred_x0"), format="png", interactive=False, height=280),
                             label="pred_x0")
        sd_note = gr.Markdown()
        sd_stored, sd_k = gr.State([], time_to_live=3600), gr.State(0)
        run_img = go_img.click(from_image, [source, start_t, label, sampler, steps, eta, guidance, seed, n, until, model,
                                          text.state],
                               [sd_xt, sd_x0, sd_note, sd_stored, sd_k], concurrency_limit=2,
                               concurrency_id="model", api_visibility="private")
    with text.reg(gr.Accordion(text("compare"), open=False), label="compare"):
        go_cmp = text.reg(gr.Button(text("run_compare")), value="run_compare")
        with gr.Row():
            c_ddim = text.reg(gr.Image(label=text("ddim_result"), format="png", interactive=False, height=280),
                              label="ddim_result")
            c_ddpm = text.reg(gr.Image(label=text("ddpm_result"), format="png", interactive=False, height=280),
                              label="ddpm_result")
        c_note = gr.Markdown()
        run_cmp = go_cmp.click(compare, [label, steps, guidance, seed, n, until, model, text.state],
                               [c_ddim, c_ddpm, c_note],
                               concurrency_limit=2, concurrency_id="model", api_visibility="private")
    stop.click(None, cancels=[run, run_img, run_cmp], api_visibility="private")
    return dict(label=label, sampler=sampler, steps=steps, eta=eta, guidance=guidance, guide_until=until,
                seed=seed, n=n, model=model,
                refresh=[(preview, [seed, n, text.state], [xt, x0, progress])])


# On a Hugging Face ZeroGPU Space the `spaces` package lends a GPU per call to decorated functions;
# everywhere else it is absent and nothing changes.
try:
    import spaces  # type: ignore
except ImportError:
    spaces = None
if spaces is not None:
    sample = spaces.GPU(duration=120)(sample)
    from_image = spaces.GPU(duration=120)(from_image)
    compare = spaces.GPU(duration=300)(compare)
