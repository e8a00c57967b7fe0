"""Tab 3 · Reverse process: the shipped model turns TV snow into clothes, one streamed step at a time."""
from __future__ import annotations

import io
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from ddpm.images import make_grid
from ddpm.pretrained import MAX_GUIDANCE, load_pretrained
from ddpm.samplers import timesteps_for

from .common import LATEX, image_picker, load_image, number
from . import interpolate, predict, runs
from .i18n import Text, class_name, lesson, tr

# The shipped Fashion-MNIST models, the app's default first (assets/models/MODEL_CARD.md): the small
# one is distilled from the large one and is what a 2-core CPU can run in a few seconds; the 4-step one is the
# small one progressively distilled (ddpm/progressive.py), then fine-tuned on its runs (ddpm/chains.py), with its
# guidance built in.
MODELS = ("fashion-mnist", "fashion-mnist-large", "fashion-mnist-4step")
MODEL = MODELS[0]
MAX_N = 16                # images per request: one user cannot starve the others
MAX_STORED = 200          # frames kept for the scrubber and the GIF
STREAM_EVERY = 0.08       # seconds between streamed updates (a long DDPM run would flood the browser)
SAMPLERS = {"ddim": ("ddim", "fixed_small"), "ddpm": ("ddpm", "fixed_small"), "ddpm_large": ("ddpm", "fixed_large")}
# /sample: one computation per distinct request, shared by every learner who asks for it (lessons/runs.py).
# Finished runs stay in an LRU of RUNS_BYTES: a DDIM-50 x 16 run keeps 51 frames of 2 x 12,544 bytes (x_t and
# predicted x_0 as uint8) = 1.28 MB, so 64 MB hold the last ~50 distinct runs (a DDPM-1000 x 16 one: 5.1 MB).
# DDPM_SHARE_RUNS=0 gives every request its own computation (still in the lanes below).
RUNS_BYTES = 64 * 2 ** 20
SHARE = os.environ.get("DDPM_SHARE_RUNS", "1").strip() != "0"
RUNS = runs.Runs(RUNS_BYTES)
# a run whose estimated cost exceeds LONG_SECONDS goes to the "long" lane (1 slot, stepping aside for short runs);
# the rest share the "short" lane's 2 slots. The estimate: network passes of one image x ms per pass, measured
# on the 2-core CPU of bench/RESULTS.md (DDPM-1000 x 16 ~ 75 s; the default DDIM-50 x 16 ~ 4 s).
LONG_SECONDS = 15.0
MS_PER_IMAGE = {"fashion-mnist": 3.1, "fashion-mnist-large": 8.2, "fashion-mnist-4step": 3.1}
SAMPLE_FOLLOWERS = 64     # /sample's Gradio limit: learners following a run at once (the queue's max_size)
REPLAY_FRAMES = 12        # a follower catching up on frames already computed sees at most this many of them,
REPLAY_SECONDS = 1.0      # ... in about this long
# Every streamed update costs the server ~5-10 ms on Gradio's one event-loop thread (two files to check and
# cache, the message), whoever computed the pictures: with many learners following, each one's updates come
# less often, so that all of them together get about 1 / UPDATE_COST updates per second (30 learners: one
# every 0.75 s each, the final picture at once).
UPDATE_COST = 0.025
WAITING = {"en": "⏳ waiting for a free generation slot ({lane} runs: {busy} running, {waiting} waiting); "
                 "your x_T is above",
           "zh": "⏳ 正在等待空闲的生成通道（{lane}：{busy} 个运行中，{waiting} 个等待中）；上面是你的 x_T"}
LANE_NAMES = {"en": {"short": "short", "long": "long"}, "zh": {"short": "短任务", "long": "长任务"}}


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


def model_settings(model: str = MODEL) -> tuple:
    """Switching models: the guidance slider's partner moves to the model's tuned interval, and a model with its
    guidance distilled in hides both guidance sliders (one pass per step: there is no scale to set) and sets the
    steps to its own default (4 for the 4-step model; 50 for the others)."""
    until, guidance = guidance_shown(model)
    return ({**until, "value": default_guidance_until(model)}, guidance, gr.update(value=pipe(model).default_steps))


def guidance_shown(model: str = MODEL) -> tuple:
    """Only the visibility of the two guidance sliders (hidden for a model with its guidance distilled in)."""
    shown = pipe(model).guidance_distilled is None
    return gr.update(visible=shown), gr.update(visible=shown)


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


@dataclass(eq=False)
class Step:
    """One streamed frame of a run, shared by all its followers: i = 0 is x_T ("start"), then steps 1..total.
    Images as uint8 on the CPU, (n, 1, 28, 28); `kept`: it goes into the stored frames (the scrubber)."""
    i: int
    t: int | str
    xt: torch.Tensor
    x0: torch.Tensor
    rate: float = 0.0                 # steps per second of the computation, up to this step
    kept: bool = True
    _png: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def stored(self) -> tuple:
        return (self.t, self.xt, self.x0)

    @property
    def nbytes(self) -> int:
        return self.xt.nbytes + self.x0.nbytes

    def png(self, which: str) -> str:
        """This frame's x_t or x0 grid as a PNG in Gradio's cache, encoded once for all followers."""
        with self._lock:
            if which not in self._png:
                self._png[which] = _png_file(_picture(getattr(self, which)))
            return self._png[which]


def _png_file(picture: np.ndarray) -> str:
    """A picture -> a PNG file where Gradio keeps its own (same layout: a folder named by the hash of the
    bytes), so that Gradio serves it as it is instead of encoding the same picture again for every follower."""
    from PIL import Image
    from gradio import processing_utils, utils
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, "png", compress_level=1)       # 2x faster than the default, ~3 % larger
    data = buf.getvalue()
    folder = Path(utils.get_upload_folder()) / processing_utils.hash_bytes(data)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "image.png"
    if not path.exists():
        tmp = folder / f".image.{threading.get_ident()}.png"
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return str(path)


def _start(first: torch.Tensor) -> Step:
    u8 = _u8(first)
    return Step(0, "start", u8, torch.zeros_like(u8))


def _steps(frames: Iterator, total: int) -> Iterator[tuple[Step, bool, int]]:
    """Frames -> (Step, kept, bytes kept): every step is streamed, at most MAX_STORED are kept."""
    keep = max(1, math.ceil(total / MAX_STORED))
    t0 = time.time()
    for i, f in enumerate(frames, 1):
        kept = i % keep == 0 or i == total
        s = Step(i, f.t, _u8(f.x_t), _u8(f.x0_pred), i / max(time.time() - t0, 1e-9), kept)
        yield s, kept, s.nbytes if kept else 0


def _numpy(step: Step, which: str) -> np.ndarray:
    return _picture(getattr(step, which))


def _render(source, ts: list[int], n: int, lang: str = "en",
            picture: Callable[[Step, str], object] = _numpy) -> Iterator[tuple]:
    """Steps -> (x_t grid, x0 grid, progress Markdown, stored frames, scrub slider update), throttled; the text
    in this learner's language. Live steps are shown at most every STREAM_EVERY seconds; steps the run had
    already computed (a learner who joined late, or a finished run) as a short replay of about REPLAY_FRAMES."""
    total, stored, last = len(ts), [], 0.0
    crowd = getattr(source, "crowd", ())
    try:
        for s in source:
            if s is runs.WAITING:
                run = getattr(source, "run", None)
                if run is not None and not run.started:
                    lane = run.lane
                    msg = WAITING.get(lang, WAITING["en"]).format(
                        lane=LANE_NAMES.get(lang, LANE_NAMES["en"])[lane.name], busy=lane.busy, waiting=lane.waiting)
                else:
                    msg = gr.update()
                yield gr.update(), gr.update(), msg, stored, gr.update()
                continue
            if s.kept:
                stored.append(s.stored)
            if s.i == 0:
                yield (picture(s, "xt"), None, tr("msg.start", lang).format(n=n, total=total, ts=visited(ts, lang)),
                       stored, gr.update())
                continue
            final = s.i == total
            if not final:
                gap = max(STREAM_EVERY, len(crowd) * UPDATE_COST)
                if source.behind:
                    if s.i % max(1, math.ceil(total / max(1, min(REPLAY_FRAMES, int(REPLAY_SECONDS / gap))))):
                        continue
                    time.sleep(max(0.0, last + gap - time.time()))
                elif time.time() - last < gap:
                    continue
            last = time.time()
            bar = "█" * round(20 * s.i / total) + "░" * (20 - round(20 * s.i / total))
            msg = f"`{bar}` " + tr("msg.step", lang).format(i=s.i, total=total, t=s.t, rate=s.rate,
                                                            ts=visited(ts, lang))
            yield (picture(s, "xt"), picture(s, "x0"), msg, stored,
                   gr.update(maximum=len(stored) - 1, value=len(stored) - 1) if final else gr.update())
            if final:
                return
    finally:
        if hasattr(source, "close"):
            source.close()


def _stream(frames: Callable[[], Iterator], ts: list[int], n: int, first: torch.Tensor, lang: str = "en",
            lane: str = "short") -> Iterator[tuple]:
    """Frames computed in a slot of `lane`, unshared -> (x_t grid, x0 grid, progress Markdown, stored frames, scrub
    slider update), throttled. At most MAX_STORED frames are kept, small (uint8, 28x28 each), and enlarged only when
    shown. ZeroGPU: computed here, in this thread (the GPU is lent to this call only)."""
    def start():
        s = _start(first)
        return s, s.nbytes

    def compute():
        yield from _steps(frames(), len(ts))
    if spaces is not None:
        s0, nbytes = start()
        source = runs.inline(_chain((s0, True, nbytes), compute()))
    else:
        source = RUNS.follow(None, compute, start, lane)
    yield from _render(source, ts, n, lang)


def run_key(p, a: dict) -> tuple:
    """Everything that determines a run's images (not the language): the model's weights and precision and the
    sampler's arguments. DDPM visits every t whatever `steps` says."""
    steps = p.timesteps if a["sampler"] == "ddpm" else a["steps"]
    return (p.name, id(p.model), p.precision, str(p.device), a["sampler"], a["variance"], steps, float(a["eta"]),
            float(a["guidance_scale"]), a["guidance_interval"], a["seed"], a["n"], tuple(a["labels"] or ()))


def cost_seconds(p, a: dict, ts: list[int]) -> float:
    """Roughly how long the run computes on the benchmark's 2-core CPU: network passes of one image x ms each.
    Classifier-free guidance costs two passes at a step where it applies, one elsewhere."""
    s = float(a["guidance_scale"])
    guided = a["labels"] is not None and s not in (0.0, 1.0) and getattr(p, "guidance_distilled", None) is None
    lo, hi = a["guidance_interval"] if a["guidance_interval"] is not None and s > 1 else (-math.inf, math.inf)
    passes = sum(2 if guided and lo <= t <= hi else 1 for t in ts)
    ms = MS_PER_IMAGE.get(p.name, 8.2 if p.num_parameters > 500_000 else 3.1)
    return passes * a["n"] * ms / 1000


def lane_for(p, a: dict, ts: list[int]) -> str:
    return "long" if cost_seconds(p, a, ts) > LONG_SECONDS else "short"


def _sample(label, sampler, steps, eta, guidance_scale, seed, n, guidance_until, model, lang,
            picture: Callable[[Step, str], object]) -> Iterator[tuple]:
    a = check(label, sampler, steps, eta, guidance_scale, seed, n, guidance_until, model)    # gr.Error first
    p = pipe(model)
    ts = timesteps_for(a["sampler"], a["steps"], p.timesteps, spacing=getattr(p, "spacing", "linspace"))

    def compute():
        yield from _steps(p.progressive(**a, x_T=p.initial_noise(a["n"], a["seed"])), len(ts))

    def first():                  # x_T, shown at once, before the run gets a lane
        s = _start(_snow(p.initial_noise(a["n"], a["seed"])))
        return s, s.nbytes

    if spaces is not None:        # ZeroGPU lends the GPU to this call only: compute here, unshared
        x_T, nbytes = first()
        source = runs.inline(_chain((x_T, True, nbytes), compute()))
    else:
        source = RUNS.follow(run_key(p, a) if SHARE else None, compute, first, lane_for(p, a, ts))
    try:
        yield from _render(source, ts, a["n"], lang, picture)
    except ValueError as e:
        raise gr.Error(str(e)) from None


def _chain(first, rest):
    yield first
    yield from rest


def sample(label: str = "any", sampler: str = "ddim", steps: int = 50, eta: float = 0.0, guidance_scale: float = 3.0,
           seed: int = 0, n: int = 16, guidance_until: int | None = None, model: str = MODEL, lang: str = "en"):
    """Stream a reverse run: one update per step (x_t grid, predicted-x_0 grid, progress, ...).
    The last update's first output is the final image grid. The API's /sample.
    guidance_until: guide only while t <= this, plain conditional above (None: the model's default);
    model: one of MODELS."""
    yield from _sample(label, sampler, steps, eta, guidance_scale, seed, n, guidance_until, model, lang, _numpy)


# What the app registers as /sample: the same parameters, updates and pictures as `sample`, but each picture is a
# PNG file encoded once per frame for all the learners who follow that run (given an array, Gradio would encode
# it again for every learner and every update: ~5 ms each here).
def sample_event(label: str = "any", sampler: str = "ddim", steps: int = 50, eta: float = 0.0,
                 guidance_scale: float = 3.0, seed: int = 0, n: int = 16, guidance_until: int | None = None,
                 model: str = MODEL, lang: str = "en"):
    yield from _sample(label, sampler, steps, eta, guidance_scale, seed, n, guidance_until, model, lang,
                       Step.png)


sample_event.__doc__ = sample.__doc__


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
    ts = timesteps_for(a["sampler"], a["steps"], p.timesteps, start_t=start_t, spacing=p.spacing)
    noisy = q_sample(p.schedule, (x0 * 2 - 1).expand(a["n"], -1, -1, -1), start_t,
                     p.initial_noise(a["n"], a["seed"]).cpu())
    frames = lambda: p.progressive(**a, init_image=x0, start_t=start_t)        # noqa: E731
    yield from _stream(frames, ts, a["n"], ((noisy.clamp(-1, 1) + 1) / 2).float(), lang, lane_for(p, a, ts))


def compare(label: str = "any", steps: int = 50, guidance_scale: float = 3.0, seed: int = 0, n: int = 4,
            guidance_until: int | None = None, model: str = MODEL, lang: str = "en"):
    """DDIM (steps) and DDPM (all T) from the very same x_T: yields (DDIM grid, DDPM grid, note)."""
    a = check(label, "ddim", steps, 0.0, guidance_scale, seed, n, guidance_until, model)
    p = pipe(model)
    x_T = p.initial_noise(a["n"], a["seed"])

    def compute():
        t0 = time.time()
        ddim = p.sample(**a, x_T=x_T)
        t_ddim = time.time() - t0
        yield grid_picture(ddim), None, tr("msg.cmp_start", lang).format(steps=a["steps"], t_ddim=t_ddim, T=p.timesteps)
        t0, last = time.time(), 0.0
        for i, f in enumerate(p.progressive(**{**a, "sampler": "ddpm"}, x_T=x_T), 1):
            if time.time() - last > 0.25 or i == p.timesteps:
                last = time.time()
                yield (grid_picture(ddim), grid_picture(f.x_t),
                       tr("msg.cmp_step", lang).format(steps=a["steps"], t_ddim=t_ddim, T=p.timesteps, i=i,
                                                       elapsed=time.time() - t0))
    ts = timesteps_for("ddpm", p.timesteps, p.timesteps)
    # DDPM's 1000 steps make this a long run: it takes the long lane, which steps aside for short ones
    yield from (compute() if spaces is not None else RUNS.in_lane(compute, lane_for(p, {**a, "sampler": "ddpm"}, ts)))


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


def class_choices(classes: list[str], lang: str) -> list[tuple[str, str]]:
    """The class box's (shown, value) pairs: "any", then each class by its name in `lang`; values stay English."""
    return [(tr("any", lang), "any")] + [(class_name(c, lang), c) for c in classes]


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
                label = text.reg_fn(gr.Dropdown(class_choices(p.classes, text.lang), value="any",
                                                label=text("label"), min_width=140, scale=2),
                                    lambda lang: dict(label=tr("label", lang), choices=class_choices(p.classes, lang)))
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
    # /sample's own limit only bounds how many learners follow runs at once: they wait on their run, and the
    # computations take turns in lessons/runs.py's lanes (2 short slots, 1 long); app.py raises max_threads to match
    run = go.click(sample_event, [label, sampler, steps, eta, guidance, seed, n, until, model, text.state], outs,
                   api_name="sample", concurrency_limit=SAMPLE_FOLLOWERS, concurrency_id="sample")
    # each model has its own tuned guidance interval and default steps: switching models moves the sliders to
    # them (.input, not .change: a deep link that sets both must keep its own guide_until and steps)
    model.input(model_settings, model, [until, guidance, steps], queue=False, api_visibility="private")
    # a deep link's model hides or shows the guidance sliders too (its own steps and guide_until stay)
    model.change(guidance_shown, model, [until, guidance], queue=False, api_visibility="private")
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
    interpolate.build(text, seed)
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
    sample_event = spaces.GPU(duration=120)(sample_event)
    from_image = spaces.GPU(duration=120)(from_image)
    compare = spaces.GPU(duration=300)(compare)
