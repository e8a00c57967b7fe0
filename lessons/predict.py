"""Predict, then see: each tab asks for a guess before it shows the answer, measured live on the tab's own settings.

Committing to a prediction before seeing the result makes people remember and understand it better (Kim,
Reinecke & Hullman, CHI 2017). Every reveal puts the learner's guess and the measured truth side by side.
Handlers are plain functions (values in -> Markdown / images out); `box` lays out one prompt.
"""
from __future__ import annotations

import gradio as gr
import torch

from ddpm import q_sample
from ddpm.toy import TOYS, make_toy

from .common import choice, example_names, load_image, noise_like, number, schedule_from, strip, timestep
from .i18n import Text, tr

STEP_COUNTS = (1, 2, 3, 5, 8, 12, 20, 35)         # DDIM step counts the reverse prompt measures
REFERENCE = 100                                    # ... each against this many steps from the same noise
CLEAN = 0.04                                       # "clean": mean |difference| to the reference below this


def contrast_t(image, schedule, timesteps, beta_start, beta_end) -> int:
    """The first t at which the noise in x_t is as strong as the picture in it: sqrt(1 - abar_t) >= sqrt(abar_t)
    times the standard deviation of x_0's pixels (the picture's own contrast), read off ddpm's tables."""
    s = schedule_from(schedule, timesteps, beta_start, beta_end)
    contrast = load_image(image).std().item()
    over = (s.sqrt_one_minus_alphas_cumprod >= s.sqrt_alphas_cumprod * contrast).nonzero()
    return int(over[0]) if len(over) else s.timesteps - 1


def recognition_t(image, schedule, timesteps, beta_start, beta_end) -> int:
    """The first t at which the image, noised with the tab's fixed eps, is no longer recognised: a matched filter
    (the correlation of x_t with each candidate picture) no longer picks x_0 among the shipped examples of the same
    size. It is a generous observer: people give up a little earlier."""
    s = schedule_from(schedule, timesteps, beta_start, beta_end)
    x0 = load_image(image)                                                     # (1, C, S, S) in [-1, 1]
    eps = noise_like(x0)
    others = [load_image(n) for n in example_names() if n != image]
    others = [o for o in others if o.shape == x0.shape and not torch.equal(o, x0)]
    cands = torch.cat([x0] + others).flatten(1)                                 # (K, D); row 0 is the truth
    cands = (cands - cands.mean(1, keepdim=True)) / (cands.std(1, keepdim=True) + 1e-8)
    for start in range(0, s.timesteps, 250):
        ts = torch.arange(start, min(start + 250, s.timesteps))
        x_t = q_sample(s, x0.expand(len(ts), *x0.shape[1:]), ts, eps.expand(len(ts), *eps.shape[1:])).flatten(1)
        x_t = (x_t - x_t.mean(1, keepdim=True)).float()                         # (n, D)
        lost = ((x_t @ cands.T).argmax(1) != 0).nonzero()                       # (n, K) correlations
        if len(lost):
            return int(ts[lost[0]])
    return s.timesteps - 1


def forward_reveal(guess, image=None, schedule: str = "linear", timesteps: int = 1000, beta_start: float = 1e-4,
                   beta_end: float = 0.02, lang: str = "en") -> str:
    """Your t against the measured one, and what the tab's schedule looks like there."""
    s = schedule_from(schedule, timesteps, beta_start, beta_end)
    guess = timestep(guess, s)
    t_noise = contrast_t(image, schedule, timesteps, beta_start, beta_end)
    t = recognition_t(image, schedule, timesteps, beta_start, beta_end)
    return tr("predict.forward.reveal", lang).format(guess=guess, t_noise=t_noise, t=t,
                                                     signal=f"{s.sqrt_alphas_cumprod[t].item():.3f}")


def posterior_reveal(guess, t: int = 500, schedule: str = "linear", timesteps: int = 1000, beta_start: float = 1e-4,
                     beta_end: float = 0.02, lang: str = "en") -> str:
    """Is beta-tilde_t larger or smaller than beta_t? The two numbers at the tab's t, and the ratio everywhere."""
    guess = choice(guess, "guess", ("larger", "smaller", "equal"))
    s = schedule_from(schedule, timesteps, beta_start, beta_end)
    t = timestep(t, s)
    bt, beta = s.posterior_variance[t].item(), s.betas[t].item()
    ratio = s.posterior_variance / s.betas                                     # (T,) in [0, 1]
    truth = "smaller" if bt < beta * (1 - 1e-9) else "equal"
    return tr("predict.posterior.reveal", lang).format(
        guess=tr(f"predict.{guess}", lang), truth=tr(f"predict.{truth}", lang), t=t, bt=f"{bt:.5g}", beta=f"{beta:.5g}",
        ok="✅" if guess == truth else "❌", above=int((ratio > 0.9).nonzero()[0]) if (ratio > 0.9).any() else "–")


def reverse_reveal(guess, label: str = "any", seed: int = 0, model: str | None = None, lang: str = "en"):
    """DDIM from the same noise at growing step counts, each compared with a REFERENCE-step run: the first count whose
    images differ from it by less than CLEAN on average -> (strip of the 4-image grids, Markdown)."""
    from . import reverse
    guess = number(guess, "guess", 1, 1000, integer=True)
    seed = number(seed, "seed", 0, 2 ** 31 - 1, integer=True)
    p = reverse.pipe(model or reverse.MODEL)
    labels = None if label in (None, "", "any") else [label]
    try:
        p.label_indices(labels, 1)
    except ValueError as e:
        raise gr.Error(str(e)) from None
    x_T = p.initial_noise(4, seed)
    kw = dict(n=4, sampler="ddim", guidance_scale=3.0, labels=labels, x_T=x_T)
    ref = p.sample(steps=REFERENCE, **kw)                                            # (4, 1, 28, 28) in [0, 1]
    runs = [(k, p.sample(steps=k, **kw)) for k in STEP_COUNTS]
    gaps = [(k, (x - ref).abs().mean().item()) for k, x in runs]
    clean = next((k for k, g in gaps if g < CLEAN), STEP_COUNTS[-1])
    tiles = [torch.cat([torch.cat([x[0], x[1]], 2), torch.cat([x[2], x[3]], 2)], 1) * 2 - 1 for _, x in runs]
    table = " · ".join(f"{k}: {g:.3f}" for k, g in gaps)
    return strip(tiles, 96), tr("predict.reverse.reveal", lang).format(guess=guess, clean=clean, table=table,
                                                                         limit=CLEAN, ref=REFERENCE)


def training_reveal(guess, state=None, toy: str = "two-moons", lang: str = "en") -> str:
    """Can L_simple reach 0? The loss of the model (trained here, else shipped) on 20,000 fresh (x_0, t, eps)."""
    from . import training
    guess = choice(guess, "guess", ("yes", "no"))
    toy = choice(toy, "toy data set", TOYS)
    # a flow-matching model trained here predicts a velocity, not eps: the question is about L_simple, so the
    # shipped eps-model answers it then
    if (isinstance(state, dict) and state.get("name") == toy and state.get("ema") is not None
            and state.get("objective", "eps") == "eps"):
        import ddpm
        model = ddpm.ToyMLP(hidden=128)
        model.load_state_dict(state["ema"])
        schedule, source = ddpm.make_schedule("cosine", training.TOY_T), "trained"
    else:
        from ddpm.pretrained import load_pretrained
        pipe = load_pretrained(toy)
        model, schedule, source = pipe.model, pipe.schedule, "shipped"
    g = torch.Generator().manual_seed(0)
    x0 = make_toy(toy, 20000, seed=3)                                          # (N, 2)
    t = torch.randint(0, schedule.timesteps, (len(x0),), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        loss = ((model(q_sample(schedule, x0, t, eps).float(), t) - eps) ** 2).mean().item()   # Algorithm 1's loss
    return tr("predict.training.reveal", lang).format(
        guess=tr(f"predict.{guess}", lang), loss=f"{loss:.3f}", source=tr(f"predict.source.{source}", lang),
        ok="✅" if guess == "no" else "❌")


def box(text: Text, key: str, guess: gr.components.Component, reveal_fn, inputs: list, outputs: list | None = None):
    """One prompt: the question, the learner's control, a Reveal button, and where the answer appears."""
    with text.reg(gr.Accordion(text(f"predict.{key}.title"), open=True, elem_classes="predict"),
                  label=f"predict.{key}.title"):
        text.reg(gr.Markdown(text(f"predict.{key}.q")), value=f"predict.{key}.q")
        guess.render()
        btn = text.reg(gr.Button(text("predict.reveal"), size="sm", elem_id=f"predict-{key}"), value="predict.reveal")
        answer = gr.Markdown(elem_id=f"predict-{key}-answer")
        extra = list(outputs or [])
        for comp in extra:
            comp.render()
    btn.click(reveal_fn, [guess] + inputs, extra + [answer], concurrency_limit=2, concurrency_id="model",
              api_visibility="private")
    return answer


__all__ = ["forward_reveal", "posterior_reveal", "reverse_reveal", "training_reveal", "box", "recognition_t"]

