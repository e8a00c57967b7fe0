"""Tab 2 · Posterior: q(x_{t-1} | x_t, x_0) (Eq. 6-7) with its numbers, next to the images it gives."""
from __future__ import annotations

from functools import lru_cache

import gradio as gr
import plotly.graph_objects as go
import torch

from ddpm import Schedule, q_posterior, q_sample

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
    timestep,
    to_picture,
)
from . import predict, stage
from .forward import _thin
from .i18n import LANGS, Text, lang_of, lesson, tr


def formula(s: Schedule, t: int, lang: str = "en") -> str:
    """mu-tilde and beta-tilde (Eq. 7), symbolic and with the current numbers substituted."""
    c1, c2 = s.posterior_mean_coef1[t].item(), s.posterior_mean_coef2[t].item()
    bt, beta = s.posterior_variance[t].item(), s.betas[t].item()
    p = t - 1
    return "\n\n".join([
        # aligned lines, so that the formulas fit a phone's width
        f"$$\\begin{{aligned}}\\tilde\\mu_{{{t}}}(x_t, x_0) &= \\frac{{\\sqrt{{\\bar\\alpha_{{{p}}}}}\\,\\beta_{{{t}}}}}{{1-\\bar\\alpha_{{{t}}}}}\\,x_0"
        f" \\\\ &\\quad + \\frac{{\\sqrt{{\\alpha_{{{t}}}}}\\,(1-\\bar\\alpha_{{{p}}})}}{{1-\\bar\\alpha_{{{t}}}}}\\,x_t"
        f" \\\\ &= {fmt(c1)}\\,x_0 + {fmt(c2)}\\,x_t\\end{{aligned}}$$",
        f"$$\\begin{{aligned}}\\tilde\\beta_{{{t}}} &= \\frac{{1-\\bar\\alpha_{{{p}}}}}{{1-\\bar\\alpha_{{{t}}}}}\\,\\beta_{{{t}}}"
        f" = {fmt(bt)} \\\\ \\beta_{{{t}}} &= {fmt(beta)}, \\qquad \\tilde\\beta_{{{t}}}/\\beta_{{{t}}}"
        f" = {fmt(bt / beta)}\\end{{aligned}}$$",
        tr("posterior.numbers", lang).format(t=t, c1=fmt(c1), c2=fmt(c2), bt=fmt(bt), beta=fmt(beta)),
    ])


@lru_cache(maxsize=16 * len(LANGS))
def _variance_base(s: Schedule, lang: str = "en") -> dict:
    """Both variance curves of one schedule, without the t markers (cached per schedule and language, see
    common.plot_data)."""
    idx = _thin(s.timesteps)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=idx, y=s.betas.numpy()[idx], name=tr("fig.beta_large", lang)))
    fig.add_trace(go.Scatter(x=idx, y=s.posterior_variance.numpy()[idx], name=tr("fig.beta_small", lang)))
    fig.update_layout(height=300, margin=dict(l=50, r=10, t=30, b=40), xaxis_title=tr("fig.timestep", lang),
                      yaxis_title=tr("fig.variance", lang), yaxis_type="log", template="plotly_white",
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"))
    return plain_figure(fig)


def variance_figure(s: Schedule, t: int, lang: str = "en") -> PlotData:
    """The paper's two choices for sigma_t^2: beta_t (upper bound) and beta-tilde_t (lower bound), marked at t."""
    base = _variance_base(s, lang_of(lang))
    marker = dict(type="scatter", x=[t, t], y=[s.betas[t].item(), s.posterior_variance[t].item()], mode="markers",
                  marker=dict(size=9, color="black"), showlegend=False)
    return plot_data({"data": base["data"] + [marker], "layout": base["layout"]})


def posterior(image=None, t: int = 500, schedule: str = "linear", timesteps: int = 1000, beta_start: float = 1e-4,
              beta_end: float = 0.02, seed: int = 0, lang: str = "en"):
    """-> (x_t, mu-tilde, x_{t-1} draw, x_0, formula, variance plot). The API's /posterior (always English: the
    endpoint has no language parameter; the tab passes the app's language State as `lang`)."""
    s = schedule_from(schedule, timesteps, beta_start, beta_end)
    t = timestep(t, s)
    x0 = load_image(image)                                                   # (1, C, S, S) in [-1, 1]
    x_t = q_sample(s, x0, t, noise_like(x0))                                 # Eq. 4
    mean, var, _ = q_posterior(s, x0, x_t, t)                                # Eq. 7
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed) + 1))
    x_prev = mean + var.sqrt() * z                                           # a draw of x_{t-1}
    return (to_picture(x_t), to_picture(mean), to_picture(x_prev), to_picture(x0), formula(s, t, lang),
            variance_figure(s, t, lang))


def stage_data(image=None, t: int = 500, schedule: str = "linear", timesteps: int = 1000, beta_start: float = 1e-4,
               beta_end: float = 0.02, seed: int = 0, lang: str = "en") -> dict:
    """What the page needs to scrub t by itself: x_0, its eps (for x_t), the draw's noise z and the schedule's
    tables (posterior_mean_coef1/2, posterior_variance, ...), as ddpm computed them; once per (image, schedule)."""
    s = schedule_from(schedule, timesteps, beta_start, beta_end)
    t = timestep(t, s)
    x0 = load_image(image)                                                   # (1, C, S, S) in [-1, 1]
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed) + 1))
    keys = {"xt": "xt", "post_mean": "post_mean", "post_draw": "post_draw", "x0": "x0", "cite": "cite.eq7",
            "timestep": "fig.timestep", "beta_large": "fig.beta_large", "beta_small": "fig.beta_small",
            "variance_title": "variances"}
    return {"T": s.timesteps, "t": t, "x0": stage.image(x0), "eps": stage.image(noise_like(x0)), "z": stage.image(z),
            "tables": stage.tables(s), "labels": {k: tr(v, lang) for k, v in keys.items()}}


def relabel(*args, **kwargs):
    """After a language switch: the stage's data again, with its labels in the new language (bad settings,
    already reported when they were entered, change nothing)."""
    try:
        return stage_data(*args, **kwargs)
    except gr.Error:
        return gr.skip()


def build(text: Text) -> dict:
    """The stage (x_t, mu-tilde, a draw of x_{t-1}, x_0, its t slider, the live formula and the variances)
    beside the lesson; the schedule and image settings below the slider."""
    with gr.Row(elem_classes="stage-row"):
        with gr.Column(scale=3, min_width=320, elem_classes="stage-col"):
            gr.HTML(stage.html("posterior"), elem_id="posterior-html", apply_default_css=False, js_on_load=None)
            t = text.reg(gr.Slider(0, 999, value=500, step=1, label=text("t"), elem_id="posterior-t"), label="t")
            with text.reg(gr.Accordion(text("settings"), open=True), label="settings"):
                kind, T, b0, b1 = schedule_settings(text, t)
                image, upload, source = image_picker(text, "trouser")
                seed = text.reg(gr.Number(0, precision=0, label=text("seed"), min_width=80), label="seed")
        with gr.Column(scale=2, min_width=300, elem_classes="lesson-col"):
            options = ("larger", "smaller", "equal")
            guess = text.reg_fn(gr.Radio([(text(f"predict.{o}"), o) for o in options], label=text("predict.guess"),
                                         render=False),
                                lambda lang: dict(label=tr("predict.guess", lang),
                                                  choices=[(tr(f"predict.{o}", lang), o) for o in options]))
            predict.box(text, "posterior", guess, predict.posterior_reveal, [t, kind, T, b0, b1] + lang_input(text))
            text.reg(gr.Markdown(lesson("posterior", text.lang), latex_delimiters=LATEX), value="lesson:posterior")
    data = gr.JSON(visible=False)
    with gr.Group(visible=False):             # the /posterior API's outputs, unseen in the tab
        xt, mu, xp, x0 = (gr.Image(format="png") for _ in range(4))
        eq, plot = gr.Markdown(), gr.Plot()

    lang = lang_input(text)                     # the app's language State, last: the handler's `lang`
    inputs = [source, t, kind, T, b0, b1, seed] + lang
    # the documented API endpoint first (it claims the name), with exactly the handler's parameters
    api_file = gr.File(visible=False)
    gr.Button(visible=False).click(posterior, [api_file, t, kind, T, b0, b1], [xt, mu, xp, x0, eq, plot],
                                   api_name="posterior")
    data.change(None, data, None, js="(d) => { window.ddpm && window.ddpm.posterior.load(d); }")
    t.change(None, t, None, js="(t) => { window.ddpm && window.ddpm.posterior.show(t); }")
    for trigger in (kind.change, T.submit, b0.submit, b1.submit, seed.submit, source.change):
        trigger(stage_data, inputs, data, show_progress="hidden", trigger_mode="always_last", queue=False,
                api_visibility="private")
    return dict(image=image, t=t, schedule=kind, timesteps=T, beta_start=b0, beta_end=b1,
                refresh=[(stage_data, inputs, data)],
                on_lang=relabel, on_lang_io=(inputs, [data]))
