"""Tab 1 · Forward process: q(x_t | x_0) in closed form (Eq. 4), live on a real image."""
from __future__ import annotations

from functools import lru_cache

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ddpm import SCHEDULES, Schedule, q_sample

from .common import (
    LATEX,
    PlotData,
    fmt,
    image_picker,
    lang_input,
    load_image,
    noise_like,
    plain_figure,
    plot_data,
    schedule_from,
    schedule_settings,
    strip,
    timestep,
    to_picture,
)
from . import predict, stage
from .i18n import LANGS, Text, lang_of, lesson, tr

FILM = 8   # frames in the filmstrip


def _thin(T: int, k: int = 400) -> np.ndarray:
    """At most k indices spread over 0..T-1, for plotting long schedules quickly."""
    return np.unique(np.linspace(0, T - 1, min(T, k)).round().astype(int))


def _series(s: Schedule, lang: str = "en") -> list[tuple[int, str, torch.Tensor]]:
    """(subplot row, name, values over t) of every curve the forward tab draws."""
    return [(1, "β_t", s.betas), (2, "ᾱ_t", s.alphas_cumprod), (2, tr("fig.signal", lang), s.sqrt_alphas_cumprod),
            (2, tr("fig.noise", lang), s.sqrt_one_minus_alphas_cumprod), (3, "log SNR", s.snr.log())]


@lru_cache(maxsize=16 * len(LANGS))
def _curves_base(s: Schedule, lang: str = "en") -> dict:
    """The curves of one schedule, without the t marker, as a plain figure dict. Cached per schedule and
    language (the sliders get their schedules from a cache too, so the same settings give the same object)."""
    idx = _thin(s.timesteps)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("β_t", "ᾱ_t,  √ᾱ_t,  √(1−ᾱ_t)", "log SNR_t = log ᾱ_t / (1−ᾱ_t)"))
    for row, name, y in _series(s, lang):
        fig.add_trace(go.Scatter(x=idx, y=y.numpy()[idx], name=name, mode="lines"), row=row, col=1)
    fig.update_xaxes(title_text=tr("fig.timestep", lang), row=3, col=1)
    fig.update_layout(height=560, margin=dict(l=50, r=10, t=40, b=40), legend=dict(orientation="h", y=-0.12),
                      template="plotly_white")
    return plain_figure(fig)


def curves_figure(s: Schedule, t: int, lang: str = "en") -> PlotData:
    """beta_t; alpha-bar, sqrt(alpha-bar), sqrt(1 - alpha-bar); log SNR; a marker and a dotted line at t."""
    lang = lang_of(lang)
    base = _curves_base(s, lang)
    axis = {1: "", 2: "2", 3: "3"}                                         # subplot row -> plotly's axis suffix
    markers = [dict(type="scatter", x=[t], y=[y[t].item()], xaxis="x" + axis[row], yaxis="y" + axis[row],
                    mode="markers", marker=dict(size=9, color="black"), showlegend=False,
                    hovertemplate=f"{name}(t={t}) = %{{y:.5g}}<extra></extra>")
               for row, name, y in _series(s, lang)]
    lines = [dict(type="line", x0=t, x1=t, xref="x" + axis[row], y0=0, y1=1, yref=f"y{axis[row]} domain",
                  line=dict(color="grey", dash="dot")) for row in (1, 2, 3)]
    return plot_data({"data": base["data"] + markers, "layout": {**base["layout"], "shapes": lines}})


@lru_cache(maxsize=len(LANGS))
def _histogram_base(lang: str = "en") -> dict:
    """Axes and the N(0, 1) density: the parts of the histogram that never change."""
    grid = np.linspace(-4, 4, 161)
    fig = go.Figure(go.Scatter(x=grid, y=np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi), name="N(0, 1)",
                               line=dict(color="black")))
    fig.update_layout(height=280, margin=dict(l=50, r=10, t=30, b=40), xaxis_title=tr("fig.pixel_value", lang),
                      yaxis_title=tr("fig.density", lang), xaxis_range=[-4, 4], template="plotly_white",
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"), bargap=0)
    return plain_figure(fig)


def histogram_figure(x_t: torch.Tensor, t: int, lang: str = "en") -> PlotData:
    """Histogram of x_t's pixels with the N(0, 1) density: at large t they coincide."""
    density, edges = np.histogram(x_t.flatten().numpy(), bins=60, range=(-4, 4), density=True)
    bars = dict(type="bar", x=((edges[:-1] + edges[1:]) / 2).tolist(), y=density.tolist(),
                width=float(edges[1] - edges[0]), name=tr("fig.pixels", lang).format(t=t), marker=dict(color="#6c8ebf"))
    base = _histogram_base(lang_of(lang))
    return plot_data({"data": [bars] + base["data"], "layout": base["layout"]})


def formula(s: Schedule, t: int, lang: str = "en") -> str:
    a, b = s.sqrt_alphas_cumprod[t].item(), s.sqrt_one_minus_alphas_cumprod[t].item()
    # two aligned lines, so that the formula fits a phone's width
    return (f"$$\\begin{{aligned}}x_{{{t}}} &= \\sqrt{{\\bar\\alpha_{{{t}}}}}\\,x_0 + \\sqrt{{1-\\bar\\alpha_{{{t}}}}}\\,\\epsilon"
            f" \\\\ &= {fmt(a)}\\,x_0 + {fmt(b)}\\,\\epsilon\\end{{aligned}}$$\n\n"
            + tr("forward.numbers", lang).format(beta=f"$\\beta_{{{t}}} = {fmt(s.betas[t])}$",
                                                 abar=f"$\\bar\\alpha_{{{t}}} = {fmt(s.alphas_cumprod[t])}$",
                                                 snr=f"$\\mathrm{{SNR}} = {fmt(s.snr[t])}$"))


def film_ts(T: int) -> list[int]:
    return np.linspace(0, T - 1, FILM).round().astype(int).tolist()


def _noised(image, t, schedule, timesteps, beta_start, beta_end):
    """Checked inputs -> (schedule, t, x_0, eps, x_t): the image, its fixed noise and Eq. 4 at t."""
    s = schedule_from(schedule, timesteps, beta_start, beta_end)
    t = timestep(t, s)
    x0 = load_image(image)                                                # (1, C, S, S) in [-1, 1]
    eps = noise_like(x0)
    return s, t, x0, eps, q_sample(s, x0, t, eps)                         # Eq. 4


def forward(image=None, t: int = 250, schedule: str = "linear", timesteps: int = 1000, beta_start: float = 1e-4,
            beta_end: float = 0.02, lang: str = "en"):
    """-> (x_t, x_0, eps, formula, filmstrip, curves, histogram). The API's /forward (always English: the
    endpoint has no language parameter; the tab passes the app's language State as `lang`)."""
    s, t, x0, eps, x_t = _noised(image, t, schedule, timesteps, beta_start, beta_end)
    film = filmstrip(image, t, schedule, timesteps, beta_start, beta_end)
    return (to_picture(x_t), to_picture(x0), to_picture(eps / 3), formula(s, t, lang), film,
            curves_figure(s, t, lang), histogram_figure(x_t, t, lang))


def compare_note(s1: Schedule, s2: Schedule, schedule: str, other: str, t: int, lang: str = "en") -> str:
    """The caption of the two filmstrips: which schedule is which, and alpha-bar_t of each."""
    return tr("forward.compare", lang).format(top=schedule, bottom=other, ts=", ".join(map(str, film_ts(s1.timesteps))),
                                              t=t, a_top=fmt(s1.alphas_cumprod[t]), a_bottom=fmt(s2.alphas_cumprod[t]))


def compare(image=None, t: int = 250, schedule: str = "linear", other: str = "cosine", timesteps: int = 1000,
            beta_start: float = 1e-4, beta_end: float = 0.02, lang: str = "en"):
    """Two schedules on the same image and noise: filmstrips one above the other, and x_t at t for each."""
    s1 = schedule_from(schedule, timesteps, beta_start, beta_end)
    s2 = schedule_from(other, timesteps, beta_start, beta_end)
    t = timestep(t, s1)
    x0 = load_image(image)
    eps = noise_like(x0)
    ts = film_ts(s1.timesteps)
    top, bottom = strip([q_sample(s1, x0, k, eps) for k in ts], 72), strip([q_sample(s2, x0, k, eps) for k in ts], 72)
    gap = np.full((8, top.shape[1], 3), 255, np.uint8)
    return np.concatenate([top, gap, bottom]), compare_note(s1, s2, schedule, other, t, lang)


def filmstrip(image=None, t: int = 250, schedule: str = "linear", timesteps: int = 1000, beta_start: float = 1e-4,
              beta_end: float = 0.02, lang: str = "en") -> np.ndarray:
    """x_t at FILM evenly spaced t, the same noise in every frame."""
    s, t, x0, eps, _ = _noised(image, t, schedule, timesteps, beta_start, beta_end)
    return strip([q_sample(s, x0, k, eps) for k in film_ts(s.timesteps)])


def relabel(image=None, t: int = 250, schedule: str = "linear", other: str = "cosine", timesteps: int = 1000,
            beta_start: float = 1e-4, beta_end: float = 0.02, lang: str = "en"):
    """After a language switch: the text-bearing outputs again, in `lang` -> (the stage's data with its labels,
    compare note). Bad settings (already reported when they were entered) change nothing."""
    try:
        data = stage_data(image, t, schedule, timesteps, beta_start, beta_end, lang)
        s, s2 = schedule_from(schedule, timesteps, beta_start, beta_end), schedule_from(other, timesteps, beta_start,
                                                                                         beta_end)
    except gr.Error:
        return gr.skip(), gr.skip()
    return data, compare_note(s, s2, schedule, other, data["t"], lang)


def stage_data(image=None, t: int = 250, schedule: str = "linear", timesteps: int = 1000, beta_start: float = 1e-4,
               beta_end: float = 0.02, lang: str = "en") -> dict:
    """What the page needs to scrub t by itself (lessons/static/stage.js): x_0, its fixed eps and the schedule's
    tables, as ddpm computed them; sent once per (image, schedule), not once per tick."""
    s, t, x0, eps, _ = _noised(image, t, schedule, timesteps, beta_start, beta_end)
    keys = {"xt": "xt", "x0": "x0", "eps": "noise", "signal": "fig.signal", "noise": "fig.noise",
            "timestep": "fig.timestep", "pixel_value": "fig.pixel_value", "pixels": "fig.pixels", "cite": "cite.eq4"}
    return {"T": s.timesteps, "t": t, "x0": stage.image(x0), "eps": stage.image(eps), "tables": stage.tables(s),
            "labels": {k: tr(v, lang) for k, v in keys.items()}}


def build(text: Text) -> dict:
    """Lay out the tab: the stage (x_t, its t slider, the live formula and charts) beside the lesson; the schedule
    and image settings, the filmstrip and the comparison below. Returns what deep links and the link button use."""
    with gr.Row(elem_classes="stage-row"):
        with gr.Column(scale=3, min_width=320, elem_classes="stage-col"):
            gr.HTML(stage.html("forward"), elem_id="forward-html", apply_default_css=False, js_on_load=None)
            t = text.reg(gr.Slider(0, 999, value=250, step=1, label=text("t"), elem_id="forward-t"), label="t")
            gr.HTML(stage.html("forward-charts"), elem_id="forward-charts-html", apply_default_css=False,
                    js_on_load=None)
            with text.reg(gr.Accordion(text("settings"), open=True), label="settings"):
                kind, T, b0, b1 = schedule_settings(text, t)
                image, upload, source = image_picker(text, "sneaker")
        with gr.Column(scale=2, min_width=300, elem_classes="lesson-col"):
            guess = text.reg(gr.Slider(0, 999, value=300, step=1, label=text("predict.guess_t"), render=False),
                             label="predict.guess_t")
            predict.box(text, "forward", guess, predict.forward_reveal, [source, kind, T, b0, b1] + lang_input(text))
            text.reg(gr.Markdown(lesson("forward", text.lang), latex_delimiters=LATEX), value="lesson:forward")
    film = text.reg(gr.Image(label=text("filmstrip"), format="png", interactive=False), label="filmstrip")
    with gr.Row():
        other = text.reg(gr.Dropdown(list(SCHEDULES), value="cosine", label=text("compare_with"), scale=1),
                         label="compare_with")
        cmp_note = gr.Markdown(latex_delimiters=LATEX)
    cmp_img = text.reg(gr.Image(label=text("compare_strip"), format="png", interactive=False), label="compare_strip")
    # what the stage draws arrives here once per (image, schedule); the page does the rest (stage.js)
    data = gr.JSON(visible=False)
    # the /forward API's outputs: the same handler as before, its pictures and figures unseen in the tab
    with gr.Group(visible=False):
        xt, x0, eps = gr.Image(format="png"), gr.Image(format="png"), gr.Image(format="png")
        eq, curves, hist = gr.Markdown(), gr.Plot(), gr.Plot()

    lang = lang_input(text)                     # the app's language State, last: the handlers' `lang`
    main_inputs = [source, t, kind, T, b0, b1] + lang
    cmp_inputs = [source, t, kind, other, T, b0, b1] + lang
    # the documented API endpoint first (it claims the name), with exactly the handler's parameters
    api_file = gr.File(visible=False)
    gr.Button(visible=False).click(forward, [api_file, t, kind, T, b0, b1], [xt, x0, eps, eq, film, curves, hist],
                                   api_name="forward")
    show = "(d) => { window.ddpm && window.ddpm.forward.load(d); }"
    data.change(None, data, None, js=show)
    # a programmatic change of t (a deep link, T shrinking) draws too; a drag is drawn by stage.js directly
    t.change(None, t, None, js="(t) => { window.ddpm && window.ddpm.forward.show(t); }")
    for trigger in (kind.change, T.submit, b0.submit, b1.submit, source.change):
        trigger(stage_data, main_inputs, data, show_progress="hidden", trigger_mode="always_last", queue=False,
                api_visibility="private")
        trigger(filmstrip, main_inputs, film, show_progress="hidden", trigger_mode="always_last", queue=False,
                api_visibility="private")
    for trigger in (t.release, kind.change, other.change, T.submit, b0.submit, b1.submit, source.change):
        trigger(compare, cmp_inputs, [cmp_img, cmp_note], show_progress="hidden", trigger_mode="always_last", queue=False,
                api_visibility="private")
    return dict(image=image, t=t, schedule=kind, timesteps=T, beta_start=b0, beta_end=b1, other=other,
                refresh=[(stage_data, main_inputs, data), (filmstrip, main_inputs, film),
                         (compare, cmp_inputs, [cmp_img, cmp_note])],
                on_lang=relabel, on_lang_io=(cmp_inputs, [data, cmp_note]))
