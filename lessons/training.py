"""Tab 4 · Training objective: the variational bound term by term (Eq. 5), and L_simple (Eq. 14) trained live
on 2-D points, whose reverse run learners then scrub step by step."""
from __future__ import annotations

import tempfile
import time
from functools import lru_cache

import gradio as gr
import numpy as np
import plotly.graph_objects as go
from plotly.colors import get_colorscale
import torch

import ddpm
from ddpm.data import load_fashion_mnist
from ddpm.pretrained import available, load_pretrained
from ddpm.samplers import guided, sample_loop, timesteps_for
from ddpm.toy import TOYS, make_toy, toy_dataset
from ddpm.vlb import vlb_terms

from .common import LATEX, PlotData, choice, example_names, lang_input, load_image, number, plain_figure, plot_data
from . import paths, predict, stage
from .i18n import LANGS, Text, lang_of, lesson, tr

TOY_T = 100          # forward steps of the toy diffusion
N_POINTS = 500       # points in the sample scatter and the flow
SAMPLE_SEED = 0      # x_T and the DDPM noise of every toy sample: the same points in every frame
LIM = 3.0            # fixed axis range [-LIM, LIM] of the point plots
HSV = get_colorscale("HSV")   # hue by angle; plotly.js knows no "HSV" by name, so send the scale itself


# ---- the variational bound on held-out Fashion-MNIST images --------------------------------------------------
def _held_out(n: int) -> torch.Tensor:
    """n test images (n, 1, 28, 28), the 256 pixel levels scaled to [-1, 1]; the shipped PNGs without the data set."""
    try:
        images, _ = load_fashion_mnist(split="test")
        return images[:n].float() / 127.5 - 1
    except (FileNotFoundError, OSError, ValueError):
        names = [k for k in example_names() if not k.startswith("photo")]
        return torch.cat([load_image(names[i % len(names)]) for i in range(n)])


def vlb_timesteps(T: int, stride: int) -> list[int]:
    """Every t below `stride` (the first steps hold most of the bound), then every stride-th t."""
    return sorted(set(range(min(stride, T))) | set(range(stride, T, stride)))


def cell_widths(ts: list[int], T: int) -> np.ndarray:
    """How many of the timesteps 1..T-1 each sampled t >= 1 stands for: the cells between midpoints.
    Sum of L_{t-1} over all t ~= sum of width * L_{t-1} over the sampled t (a midpoint-rule estimate)."""
    pos = np.array([t for t in ts if t >= 1], dtype=float)
    edges = np.concatenate([[0.5], (pos[1:] + pos[:-1]) / 2, [T - 0.5]])
    return np.diff(edges)


@lru_cache(maxsize=8)
def _vlb_numbers(n_images: int, stride: int) -> dict:
    """The bound's terms on n_images held-out images at vlb_timesteps(T, stride), in bits/dim (the slow part)."""
    pipe = load_pretrained("fashion-mnist")
    x0 = _held_out(n_images).to(pipe.device)                                  # (B, 1, 28, 28) in [-1, 1]
    T = pipe.timesteps
    ts = vlb_timesteps(T, stride)
    start = time.perf_counter()
    out = vlb_terms(pipe.schedule, guided(pipe.model, None), x0, ts, prediction=pipe.prediction,
                    generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - start
    terms = out["terms"].mean(0).cpu().numpy()                                # (len(ts),) bits/dim, mean over images
    prior, decoder = out["prior"].mean().item(), out["decoder"].mean().item()
    w = cell_widths(ts, T)
    middle = float((terms[1:] * w).sum())                                     # sum_{t>1} L_{t-1}, estimated
    return dict(ts=ts, T=T, terms=terms, prior=prior, decoder=decoder, middle=middle, total=prior + decoder + middle,
                seconds=seconds)


@lru_cache(maxsize=8 * len(LANGS))
def _vlb(n_images: int, stride: int, lang: str = "en") -> tuple[go.Figure, str]:
    v = _vlb_numbers(n_images, stride)
    ts, T, terms, prior, decoder = v["ts"], v["T"], v["terms"], v["prior"], v["decoder"]
    fig = go.Figure(go.Scatter(x=ts[1:], y=terms[1:], mode="lines+markers", marker=dict(size=4),
                               name="L_{t-1} = KL(q(x_{t-1}|x_t,x_0) || p_θ(x_{t-1}|x_t))"))
    fig.add_trace(go.Scatter(x=[0], y=[decoder], mode="markers", name="L_0 = −log p_θ(x_0|x_1)",
                             marker=dict(size=12, symbol="star", color="crimson")))
    fig.add_trace(go.Scatter(x=[0, T - 1], y=[prior, prior], mode="lines", line=dict(dash="dot", color="grey"),
                             name="L_T = KL(q(x_T|x_0) || N(0, I))"))
    fig.update_layout(height=380, margin=dict(l=60, r=10, t=10, b=40), template="plotly_white",
                      xaxis_title=tr("fig.timestep", lang), yaxis_title=tr("fig.bpd", lang), yaxis_type="log",
                      legend=dict(orientation="h", y=1.12))
    md = (tr("vlb.table", lang).format(prior=prior, decoder=decoder, middle=v["middle"], total=v["total"]) + "\n\n"
          + tr("vlb.note", lang).format(n=n_images, k=len(ts), T=T, stride=stride, seconds=v["seconds"]))
    return fig, md


def vlb_plot(n_images: int = 8, stride: int = 15, lang: str = "en") -> tuple[go.Figure, str]:
    """-> (bits/dim per timestep, Markdown summary) for the shipped Fashion-MNIST model. Cached (the numbers
    once, the figure and table once per language)."""
    n = number(n_images, "n_images", 1, 64, integer=True)
    s = number(stride, "stride", 1, 1000, integer=True)
    return _vlb(n, s, lang_of(lang))


def vlb_click(lang: str = "en") -> tuple[go.Figure, str]:
    """The button: the bound with the default settings, in the app's language."""
    return vlb_plot(lang=lang)


# ---- the toy: train, sample, flow ----------------------------------------------------------------------------
@lru_cache(maxsize=len(TOYS))
def _real(name: str) -> np.ndarray:
    return make_toy(name, 2000, seed=1).numpy()


def _colours(x_0: np.ndarray) -> np.ndarray:
    """One hue per point from the angle of where it *ends*: DDPM's fresh noise at every step scrambles any
    colouring by the start, but this one turns into a smooth rainbow along the shape, and each point keeps it."""
    return np.arctan2(x_0[:, 1], x_0[:, 0])


@lru_cache(maxsize=len(TOYS) * len(LANGS))
def _points_base(name: str, lang: str = "en") -> dict:
    """The real data (light grey) on fixed square axes: the part of every point plot that never changes."""
    real = _real(name)
    fig = go.Figure(go.Scatter(x=real[:, 0], y=real[:, 1], mode="markers", name=tr("fig.data", lang),
                               marker=dict(size=3, color="#d0d0d0"), hoverinfo="skip"))
    fig.update_layout(height=420, margin=dict(l=30, r=10, t=30, b=30), template="plotly_white", showlegend=False,
                      xaxis=dict(range=[-LIM, LIM], constrain="domain"),
                      yaxis=dict(range=[-LIM, LIM], scaleanchor="x", scaleratio=1, constrain="domain"))
    return plain_figure(fig)


def points_figure(name: str, pts: np.ndarray, colours: np.ndarray, title: str = "", lang: str = "en") -> PlotData:
    """The samples (coloured) over the real data; a plain figure, since the flow slider asks for one per tick."""
    lang = lang_of(lang)
    base = _points_base(name, lang)
    samples = dict(type="scatter", x=pts[:, 0].tolist(), y=pts[:, 1].tolist(), mode="markers",
                   name=tr("fig.samples", lang),
                   marker=dict(size=5, color=colours.tolist(), colorscale=HSV, cmin=-np.pi, cmax=np.pi))
    layout = {**base["layout"], "title": dict(text=title, font=dict(size=13))}
    return plot_data({"data": base["data"] + [samples], "layout": layout})


def loss_figure(losses: list[float], lang: str = "en") -> go.Figure:
    """Raw L_simple per step and its exponential moving average (bias-corrected, as TensorBoard smooths)."""
    y = np.asarray(losses, dtype=float)
    smooth, m = np.empty_like(y), 0.0
    for i, v in enumerate(y):
        m = 0.98 * m + 0.02 * v
        smooth[i] = m / (1 - 0.98 ** (i + 1))
    x = np.arange(1, len(y) + 1)
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines", name=tr("fig.loss", lang),
                               line=dict(color="#9ab7e0", width=1)))
    fig.add_trace(go.Scatter(x=x, y=smooth, mode="lines", name=tr("fig.smoothed", lang),
                             line=dict(color="#1f4e9c", width=2.5)))
    fig.update_layout(height=420, margin=dict(l=50, r=10, t=10, b=40), template="plotly_white",
                      xaxis_title=tr("fig.step", lang), yaxis_title="L_simple = ‖ε − ε_θ‖²",
                      yaxis_rangemode="tozero",
                      legend=dict(orientation="h", y=1.1))
    return fig


def reverse_run(model: torch.nn.Module, schedule, prediction: str = "epsilon", n: int = N_POINTS,
                seed: int = SAMPLE_SEED) -> np.ndarray:
    """Every state of a DDPM reverse run from Gaussian noise: (T + 1, n, 2), [0] = x_T, [-1] = the samples."""
    g = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    x = torch.randn((n, 2), generator=g).to(dev)                               # x_T ~ N(0, I), (n, 2)
    states = [x.cpu()]
    for f in sample_loop(guided(model, None), schedule, x, timesteps_for("ddpm", schedule.timesteps,
                         schedule.timesteps), "ddpm", prediction=prediction, clip=False, generator=g):
        states.append(f.x_t.cpu())
    return torch.stack(states).numpy()


def flow_run(model: torch.nn.Module, time_scale: float = 1000.0, n: int = N_POINTS, seed: int = SAMPLE_SEED,
             steps: int = TOY_T) -> np.ndarray:
    """Every state of a flow-matching run (`steps` Euler steps of ddpm/flow.py) from the same Gaussian noise as
    reverse_run: (steps + 1, n, 2), [0] = x_1 = the noise, [-1] = the samples."""
    from ddpm.flow import flow_sample_loop
    x = torch.randn((n, 2), generator=torch.Generator().manual_seed(seed))    # the same draw as reverse_run's x_T
    states = [x]
    for f in flow_sample_loop(lambda x, t: model(x, t * time_scale, labels=None), x, steps):
        states.append(f.x_t.cpu())
    return torch.stack(states).numpy()


OBJECTIVES = ("eps", "flow")   # DDPM's L_simple (predict the noise) or flow matching (predict the velocity)


def train_toy(name: str = "two-moons", steps: int = 2500, seed: int = 0, yield_s: float = 0.6, lang: str = "en",
              objective: str = "eps"):
    """Train a fresh ToyMLP, yielding (loss curve, EMA samples, state) about every `yield_s` seconds; the state is
    gr.skip() until the last yield, then {"name", "ema" (state_dict), "traj", "losses", "steps", "objective"}.

    objective "eps": L_simple (Algorithm 1), sampled by DDPM's reverse chain (T = 100, cosine schedule);
    "flow": flow matching on x_t = (1 - t) x_0 + t eps with target eps - x_0, sampled by 100 Euler steps.
    The same network, optimiser, data and seed either way: only the objective and the sampler differ."""
    name = choice(name, "toy data set", TOYS)
    objective = choice(objective, "objective", OBJECTIVES)
    steps = number(steps, "steps", 1, 20000, integer=True)
    seed = number(seed, "seed", 0, 2 ** 31 - 1, integer=True)
    yield_s = number(yield_s, "yield_s", 0, 60)
    torch.manual_seed(seed)                                                    # the network's initial weights
    model = ddpm.ToyMLP(hidden=128)
    if objective == "flow":
        diffusion = ddpm.FlowMatching(model, data_shape=(2,), sampling_steps=TOY_T)
        run = lambda ema: flow_run(ema, diffusion.time_scale)                     # noqa: E731
    else:
        diffusion = ddpm.GaussianDiffusion(model, timesteps=TOY_T, beta_schedule="cosine", data_shape=(2,),
                                           auto_normalize=False)
        run = lambda ema: reverse_run(ema, diffusion.schedule)                    # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        trainer = ddpm.Trainer(diffusion, toy_dataset(name, 4000), train_batch_size=256, train_lr=3e-3,
                               train_num_steps=2500, warmup_steps=50, ema_decay=0.99, save_and_sample_every=10 ** 9,
                               results_folder=tmp, progress=False, device="cpu", seed=seed)
        traj = run(trainer.ema)
        yield (loss_figure([], lang), points_figure(name, traj[-1], _colours(traj[-1]), tr("toy.start", lang), lang),
               gr.skip())
        last = time.perf_counter()
        while trainer.step < steps:
            trainer.train_step()
            if trainer.step < steps and (trainer.step % 25 or time.perf_counter() - last < yield_s):
                continue
            traj = run(trainer.ema)
            figures = trained_figures(name, traj, trainer.loss_history, trainer.step, steps, lang)
            if trainer.step < steps:
                yield *figures, gr.skip()
                last = time.perf_counter()
        state = {"name": name, "ema": {k: v.clone() for k, v in trainer.ema.state_dict().items()}, "traj": traj,
                 "losses": list(trainer.loss_history), "steps": steps, "objective": objective}
        yield *figures, state


def trained_figures(name: str, traj: np.ndarray, losses: list[float], step: int, steps: int, lang: str = "en"):
    """-> (loss curve, the run's final points titled with the training step)."""
    title = tr("toy.step", lang).format(i=step, n=steps)
    return loss_figure(losses, lang), points_figure(name, traj[-1], _colours(traj[-1]), title, lang)


def train_click(name: str = "two-moons", objective: str = "eps", lang: str = "en"):
    """The Train button: train_toy with its defaults and the chosen objective, in the app's language."""
    yield from train_toy(name, lang=lang, objective=objective)


@lru_cache(maxsize=len(TOYS))
def shipped_run(name: str) -> np.ndarray | None:
    """The reverse run of the shipped toy model assets/models/<name>, or None if there is none."""
    if name not in available():
        return None
    pipe = load_pretrained(name)
    return reverse_run(pipe.model, pipe.schedule, pipe.prediction)


def _trajectory(state, name: str) -> np.ndarray | None:
    if isinstance(state, dict) and state.get("name") == name and state.get("traj") is not None:
        return np.asarray(state["traj"])
    return shipped_run(name)


def flow_data(state=None, name: str = "two-moons", lang: str = "en") -> dict:
    """The whole reverse run for the page to scrub by itself (lessons/static/stage.js): every state (T + 1, n, 2)
    from the model trained here, else the shipped one; with neither, no points, only the data. Each point's hue
    comes from where it ends (see _colours), the real data is drawn beneath."""
    name = choice(name, "toy data set", TOYS)
    traj = _trajectory(state, name)
    traj = np.zeros((1, 0, 2), np.float32) if traj is None else traj
    hue = (np.degrees(_colours(traj[-1])) % 360).round(1).tolist() if traj.shape[1] else []
    return {"traj": stage.b64(traj), "steps": traj.shape[0] - 1, "n": traj.shape[1], "hue": hue,
            "data": stage.b64(_real(name)), "range": LIM, "labels": {"title": tr("flow.title", lang)}}


def flow_reset(state=None, name: str = "two-moons", lang: str = "en"):
    """After training or a new toy: the slider spans the run and sits at its end; the run for the page."""
    data = flow_data(state, name, lang)
    T = data["steps"] or TOY_T
    return gr.update(maximum=T, value=T), data


def relabel(state=None, step: int = 0, name: str = "two-moons", vlb_shown: bool = False, lang: str = "en"):
    """After a language switch: every figure and note the tab shows, again in `lang` -> (bound plot, bound
    table, loss, samples, flow); what is not shown yet (no bound computed, nothing trained) is left alone."""
    vlb = vlb_plot(lang=lang) if vlb_shown else (gr.skip(), gr.skip())
    trained = isinstance(state, dict) and "losses" in state and state.get("traj") is not None
    figures = (trained_figures(state["name"], np.asarray(state["traj"]), state["losses"], state["steps"],
                               state["steps"], lang) if trained else (gr.skip(), gr.skip()))
    try:
        flow = {**flow_data(state, name, lang), "step": step}
    except gr.Error:
        flow = gr.skip()
    return (*vlb, *figures, flow)


def _heading(text: Text, key: str) -> gr.Markdown:
    return text.reg_fn(gr.Markdown("### " + text(key)), lambda lang: {"value": "### " + tr(key, lang)})


def build(text: Text) -> dict:
    """The stage (train a toy live, then scrub its reverse run) beside the lesson; the bound term by term below.
    Returns the components deep links set, and the Train event (for a Stop button)."""
    lang = lang_input(text)                     # the app's language State, last: the handlers' `lang`
    state = gr.State(None)          # {"name", "ema", "traj", ...} of the last model trained here
    with gr.Row(elem_classes="stage-row"):
        with gr.Column(scale=3, min_width=320, elem_classes="stage-col"):
            _heading(text, "toy_title")
            with gr.Row():
                toy = text.reg(gr.Dropdown(list(TOYS), value="two-moons", label=text("toy"), scale=2), label="toy")
                objective = text.reg_fn(gr.Radio([(text("objective.eps"), "eps"), (text("objective.flow"), "flow")],
                                                  value="eps", label=text("objective"), scale=2, min_width=200),
                                        lambda lg: dict(label=tr("objective", lg),
                                                        choices=[(tr("objective.eps", lg), "eps"),
                                                                 (tr("objective.flow", lg), "flow")]))
                train_btn = text.reg(gr.Button(text("train"), variant="primary", scale=1), value="train")
                stop_btn = text.reg(gr.Button(text("stop"), variant="stop", scale=1), value="stop")
            flow_t = text.reg(gr.Slider(0, TOY_T, value=TOY_T, step=1, label=text("flow_t"), elem_id="flow-step"),
                              label="flow_t")
            gr.HTML(stage.html("flow"), elem_id="flow-html", apply_default_css=False, js_on_load=None)
            text.reg(gr.Markdown(text("flow_hint")), value="flow_hint")
            with gr.Row():
                loss = text.reg(gr.Plot(label=text("loss"), min_width=300), label="loss")
                samples = text.reg(gr.Plot(label=text("toy_samples"), min_width=300), label="toy_samples")
        with gr.Column(scale=2, min_width=300, elem_classes="lesson-col"):
            guess = text.reg_fn(gr.Radio([(text(f"predict.{o}"), o) for o in ("yes", "no")],
                                         label=text("predict.guess"), render=False),
                                lambda lang: dict(label=tr("predict.guess", lang),
                                                  choices=[(tr(f"predict.{o}", lang), o) for o in ("yes", "no")]))
            predict.box(text, "training", guess, predict.training_reveal, [state, toy] + lang)
            text.reg(gr.Markdown(lesson("training", text.lang), latex_delimiters=LATEX), value="lesson:training")

    _heading(text, "vlb_title")
    vlb_btn = text.reg(gr.Button(text("vlb_button"), variant="primary"), value="vlb_button")
    with gr.Row():
        vlb_fig = text.reg(gr.Plot(label=text("vlb_plot"), scale=3), label="vlb_plot")
        vlb_md = gr.Markdown(latex_delimiters=LATEX)
    # heavy work shares the "model" pool with the Reverse tab's generators (at most 2 at a time)
    vlb_shown = gr.State(False)
    vlb_btn.click(vlb_click, lang, [vlb_fig, vlb_md], concurrency_limit=2, concurrency_id="model",
                  api_visibility="private").success(lambda: True, None, vlb_shown, queue=False,
                                                    api_visibility="private")
    flow = gr.JSON(visible=False)   # the run the page scrubs (stage.js)

    train = train_btn.click(train_click, [toy, objective] + lang, [loss, samples, state], concurrency_limit=2,
                            concurrency_id="model", api_visibility="private")
    train.then(flow_reset, [state, toy] + lang, [flow_t, flow], api_visibility="private")
    stop_btn.click(None, None, None, cancels=[train], api_visibility="private")
    toy.change(flow_reset, [state, toy] + lang, [flow_t, flow], api_visibility="private")
    flow.change(None, flow, None, js="(d) => { window.ddpm && window.ddpm.flow.load(d); }")
    flow_t.change(None, flow_t, None, js="(k) => { window.ddpm && window.ddpm.flow.show(k); }")
    paths.build(text)               # below: paths, steps and the score (lessons/paths.py)
    return dict(toy=toy, objective=objective, flow_t=flow_t, events=dict(train=train),
                refresh=[(flow_reset, [state, toy] + lang, [flow_t, flow])],
                on_lang=relabel, on_lang_io=([state, flow_t, toy, vlb_shown] + lang,
                                             [vlb_fig, vlb_md, loss, samples, flow]))
