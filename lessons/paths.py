"""Tab 4, below the toy: paths, steps and the score. The learned score s_θ = −ε_θ/√(1−ᾱ_t) of the shipped toy
models scrubbed in the browser (ddpm/score.py), the paths of the same noise under DDPM, DDIM and flow matching,
and sample quality against the number of steps (the terminal-SNR failure and its fixes).

Built by lessons/training.py's `build` (one call, `paths.build(text)`); this section wires its own first render
and its own language switch, so training's components and return value stay as they were.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch

from ddpm import TOYS, load_pretrained, make_toy, q_sample
from ddpm.score import score_field

from . import stage
from .common import LATEX, PlotData, choice, number, plain_figure, plot_data
from .i18n import LANGS, Text, lang_of, lesson, tr

LIM = 3.0            # the plane [-LIM, LIM]^2 of the score field, as lessons/training.py's point plots
N_GRID = 21          # arrows per side: 21 x 21 = 441
N_XT = 200           # points of x_t drawn over the field
N_DATA = 1000        # real points drawn in grey
ARROW = 0.8          # an arrow of the 90th-percentile |s| at its t is ARROW grid cells long ...
CAP = 1.5            # ... and none is drawn longer than CAP times that
T_DEFAULT = 5        # where the t slider starts: near the data, the arrows point at it
N_PATHS = 12         # points in the trajectory figure
PATH_SEED = 0        # their x_T, and DDPM's fresh noise
PATH_LIM = 4.0       # the trajectory figure's axes: a few paths swing out past LIM before they land
STEPS_FILE = Path(__file__).resolve().parent.parent / "assets" / "toy-steps.json"   # written by assets/toy_steps.py
# the methods of the steps plot: (key in toy-steps.json, UI key, colour, dash)
STEP_METHODS = (("ddpm", "paths.fig.ddpm", "#ef553b", "solid"), ("ddim", "paths.fig.ddim", "#636efa", "solid"),
                ("ddim trailing", "paths.fig.trailing", "#ffa15a", "dash"),
                ("ddim clip box", "paths.fig.clip", "#636efa", "dot"),
                ("flow euler", "paths.fig.flow", "#00cc96", "solid"))
PATH_COLOURS = {"ddpm": "#ef553b", "ddim": "#636efa", "flow": "#00cc96"}


def _toy(name) -> str:
    return choice(name, "toy data set", TOYS)


@lru_cache(maxsize=len(TOYS))
def _real(name: str) -> torch.Tensor:
    """N_DATA fresh real points (N_DATA, 2) (make_toy seed 1; the models were trained on seed 0)."""
    return make_toy(name, N_DATA, seed=1)


# ---- 1. the score field, for the page to scrub --------------------------------------------------------------
@lru_cache(maxsize=len(TOYS))
def _field(name: str) -> dict:
    """Everything the page needs for one toy, at every t = 0..T-1 (the slow part, once per toy)."""
    pipe = load_pretrained(name)
    sch, T = pipe.schedule, pipe.timesteps
    f = score_field(pipe.model, sch, range(T), LIM, N_GRID)
    scores = f["scores"]                                                     # (T, G, 2), s_θ(grid, t)
    p90 = torch.quantile(scores.norm(dim=-1), 0.9, dim=1)                    # (T,) the arrows' unit at each t
    x0 = _real(name)[:N_XT]                                                  # (N_XT, 2)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))  # (N_XT, 2), one ε for every t
    xt = torch.stack([q_sample(sch, x0, t, eps) for t in range(T)])          # (T, N_XT, 2), Eq. 4
    cell = 2 * LIM / (N_GRID - 1)
    return {"field": stage.b64(scores), "grid": stage.b64(f["grid"]), "n_grid": N_GRID, "scale": stage.b64(p90),
            "tables": stage.tables(sch), "data": stage.b64(_real(name)), "xt": stage.b64(xt), "n": N_XT, "T": T,
            "range": LIM, "unit": ARROW * cell, "cap": CAP, "toy": name}


def score_data(name: str = "two-moons", t: int = T_DEFAULT) -> dict:
    """The score field of the shipped model of toy `name` at every t, with x_t and the data, for stage.js's
    D.score (base64 float32: "field" (T, G, 2), "grid" (G, 2), "scale" (T,) = 90th percentile of |s| per t,
    "xt" (T, n, 2), "data"; "tables": the schedule's, float64); "t": where to show it first."""
    name = _toy(name)
    t = number(t, "t", 0, load_pretrained(name).timesteps - 1, integer=True)
    return {**_field(name), "t": t}


# ---- 2. the same noise under three samplers ----------------------------------------------------------------
@lru_cache(maxsize=len(TOYS))
def paths_of(name: str) -> dict[str, np.ndarray]:
    """Every state (T + 1, N_PATHS, 2) of DDPM ancestral (T steps), DDIM η = 0 (T steps) and flow matching
    (T Euler steps) from the same x_T; [0] = x_T, [-1] = the samples."""
    pipe, flow = load_pretrained(name), load_pretrained(f"{name}-flow")
    T = pipe.timesteps
    x_T = pipe.initial_noise(N_PATHS, PATH_SEED)                             # (N_PATHS, 2) ~ N(0, I)
    runs = {"ddpm": pipe.progressive(N_PATHS, sampler="ddpm", x_T=x_T, seed=PATH_SEED),
            "ddim": pipe.progressive(N_PATHS, sampler="ddim", steps=T, eta=0.0, x_T=x_T, seed=PATH_SEED),
            "flow": flow.progressive(N_PATHS, steps=T, x_T=x_T)}
    with torch.inference_mode():
        return {k: torch.stack([x_T] + [f.x_t for f in run]).cpu().numpy() for k, run in runs.items()}


def _square(fig: go.Figure, lim: float, height: int = 420) -> None:
    fig.update_layout(height=height, margin=dict(l=30, r=10, t=10, b=30), template="plotly_white",
                      legend=dict(orientation="h", y=-0.08, x=0, font=dict(size=11)),
                      xaxis=dict(range=[-lim, lim], constrain="domain"),
                      yaxis=dict(range=[-lim, lim], scaleanchor="x", scaleratio=1, constrain="domain"))


@lru_cache(maxsize=len(TOYS) * len(LANGS))
def _paths_figure(name: str, lang: str) -> dict:
    real = _real(name).numpy()
    fig = go.Figure(go.Scatter(x=real[:, 0], y=real[:, 1], mode="markers", name=tr("paths.fig.data", lang),
                               marker=dict(size=3, color="#d8d8d8"), hoverinfo="skip"))
    runs = paths_of(name)
    for key, label in (("ddpm", "paths.fig.ddpm"), ("ddim", "paths.fig.ddim"), ("flow", "paths.fig.flow")):
        traj = runs[key]                                                     # (T + 1, n, 2)
        gap = np.full((1, traj.shape[1], 2), np.nan)
        line = np.concatenate([traj, gap]).transpose(1, 0, 2).reshape(-1, 2)  # path after path, NaN between
        c, jitter = PATH_COLOURS[key], key == "ddpm"           # DDPM's random walk beneath, thin and pale
        fig.add_trace(go.Scatter(x=line[:, 0], y=line[:, 1], mode="lines", name=tr(label, lang), legendgroup=key,
                                 line=dict(color=c, width=0.8 if jitter else 2), opacity=0.45 if jitter else 0.9,
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=traj[-1, :, 0], y=traj[-1, :, 1], mode="markers", legendgroup=key,
                                 showlegend=False, marker=dict(size=7, color=c, line=dict(color="white", width=1)),
                                 name=tr(label, lang), hovertemplate="(%{x:.2f}, %{y:.2f})<extra></extra>"))
    x_T = runs["ddpm"][0]
    fig.add_trace(go.Scatter(x=x_T[:, 0], y=x_T[:, 1], mode="markers", name=tr("paths.fig.start", lang),
                             marker=dict(size=8, color="black", symbol="x-thin", line=dict(width=2))))
    _square(fig, PATH_LIM)
    return plain_figure(fig)


def paths_figure(name: str = "two-moons", lang: str = "en") -> PlotData:
    """The paths of N_PATHS points from one x_T under DDPM, DDIM η = 0 and flow matching, over the data."""
    return plot_data(_paths_figure(_toy(name), lang_of(lang)))


# ---- 3. quality against steps, from the shipped sweep -------------------------------------------------------
@lru_cache(maxsize=1)
def step_table() -> dict:
    """assets/toy-steps.json: {"steps", "floor": {toy: [mean, sd]}, "energy": {toy: {method: [per step]}}}."""
    try:
        return json.loads(STEPS_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise gr.Error(f"could not read {STEPS_FILE.name} ({e}); run python assets/toy_steps.py") from None


@lru_cache(maxsize=len(TOYS) * len(LANGS))
def _steps_figure(name: str, lang: str) -> dict:
    tab = step_table()
    steps, rows = tab["steps"], tab["energy"][name]
    fig = go.Figure()
    for key, label, colour, dash in STEP_METHODS:
        fig.add_trace(go.Scatter(x=steps, y=rows[key], mode="lines+markers", name=tr(label, lang),
                                 line=dict(color=colour, dash=dash, width=2), marker=dict(size=5),
                                 hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
    floor = tab["floor"][name][0]
    fig.add_trace(go.Scatter(x=[steps[0], steps[-1]], y=[floor, floor], mode="lines", name=tr("paths.fig.floor", lang),
                             line=dict(color="black", dash="dash", width=1), hoverinfo="skip"))
    # where DDIM blows up: x̂_0 divides by √ᾱ_T (log axes: plotly places annotations at log10 of the value)
    k = steps.index(10)
    a_T = float(load_pretrained(name).schedule.sqrt_alphas_cumprod[-1])
    fig.add_annotation(x=np.log10(10), y=np.log10(rows["ddim"][k]), ax=40, ay=-50, showarrow=True, arrowhead=2,
                       text=tr("paths.fig.blowup", lang).format(a=f"{a_T:.1e}"), align="left",
                       font=dict(size=11), bgcolor="rgba(255,255,255,0.85)")
    fig.update_layout(height=420, margin=dict(l=55, r=10, t=10, b=40), template="plotly_white",
                      xaxis=dict(type="log", title=tr("paths.fig.steps", lang), tickvals=steps),
                      yaxis=dict(type="log", title=tr("paths.fig.energy", lang), tickvals=[1e-3, 1e-2, 0.1, 1, 10, 100],
                                 ticktext=["0.001", "0.01", "0.1", "1", "10", "100"]),
                      legend=dict(orientation="h", y=-0.2, x=0, font=dict(size=11)))
    return plain_figure(fig)


def steps_figure(name: str = "two-moons", lang: str = "en") -> PlotData:
    """Energy distance against steps for DDPM, DDIM (plain, trailing, clipped) and flow matching; floor dashed."""
    return plot_data(_steps_figure(_toy(name), lang_of(lang)))


def figures(name: str = "two-moons", lang: str = "en") -> tuple[PlotData, PlotData]:
    """(paths, steps) for a toy in `lang`: after a new toy, and after a language switch."""
    return paths_figure(name, lang), steps_figure(name, lang)


# ---- wiring -------------------------------------------------------------------------------------------------
def _md(text: Text, key: str, prefix: str = "") -> gr.Markdown:
    return text.reg_fn(gr.Markdown(prefix + text(key), latex_delimiters=LATEX),
                       lambda lang: {"value": prefix + tr(key, lang)})


def build(text: Text) -> dict:
    """The accordion "Paths, steps and the score": the score field (scrubbed in the page), the paths figure and
    the steps figure beside the lesson. Wires its own page load and language switch; returns its components."""
    # closed at first: the field is ~0.7 MB of numbers, sent only to a learner who opens the section
    with text.reg(gr.Accordion(text("paths.title"), open=False, elem_id="paths"), label="paths.title") as box:
        with gr.Row(elem_classes="stage-row"):
            with gr.Column(scale=3, min_width=320, elem_classes="stage-col"):
                _md(text, "paths.score_h", "#### ")
                with gr.Row():
                    toy = text.reg(gr.Dropdown(list(TOYS), value="two-moons", label=text("paths.toy"), min_width=160),
                                   label="paths.toy")
                    top = load_pretrained("two-moons").timesteps - 1
                    t = text.reg(gr.Slider(0, top, value=T_DEFAULT, step=1, label=text("paths.t"), elem_id="score-t",
                                           min_width=200, scale=2), label="paths.t")
                gr.HTML(stage.html("score"), elem_id="score-html", apply_default_css=False)
                _md(text, "paths.score_note")
                _md(text, "paths.traj_h", "#### ")
                traj = text.reg(gr.Plot(paths_figure("two-moons", text.lang), label=text("paths.traj"),
                                        show_label=False, elem_id="paths-traj"), label="paths.traj")
                _md(text, "paths.traj_note")
                _md(text, "paths.steps_h", "#### ")
                steps = text.reg(gr.Plot(steps_figure("two-moons", text.lang), label=text("paths.steps"),
                                         show_label=False, elem_id="paths-steps"), label="paths.steps")
                _md(text, "paths.steps_note")
            with gr.Column(scale=2, min_width=300, elem_classes="lesson-col"):
                text.reg(gr.Markdown(lesson("paths", text.lang), latex_delimiters=LATEX), value="lesson:paths")
    data = gr.JSON(visible=False)           # the field the page scrubs (stage.js, D.score)
    data.change(None, data, None, js="(d) => { window.ddpm && window.ddpm.score && window.ddpm.score.load(d); }")
    t.change(None, t, None, js="(k) => { window.ddpm && window.ddpm.score && window.ddpm.score.show(k); }")
    toy.change(score_data, [toy, t], data, api_visibility="private")
    # the language, in a hidden box the app's switch sets (a change of the gr.State itself does not reach the page
    # when the switch runs outside the queue): a new language redraws the figures' text
    shown_lang = text.reg_fn(gr.Textbox(text.lang, visible=False), lambda lang: {"value": lang})
    toy.change(figures, [toy, shown_lang], [traj, steps], api_visibility="private")
    shown_lang.change(figures, [toy, shown_lang], [traj, steps], api_visibility="private")
    box.expand(score_data, [toy, t], data, show_progress="hidden", api_visibility="private")
    return dict(toy=toy, t=t, data=data, paths=traj, steps=steps, lang=shown_lang)
