"""Chinese text: full-width punctuation in the lessons and the UI table, and no untranslated English in what the
handlers write (Markdown, notes, and every piece of text in their figures) when the app is set to 中文."""
import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

from figures import load
from lessons import forward, posterior, reverse, training
from lessons.i18n import UI, Text
from zh_text import english_words, half_width_punctuation

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
# Latin that is maths or code, not prose, in text that cannot carry $...$ or `...` (plot labels, plain labels):
# x_{t-1} and x_0 read as "x_", p_θ as "p_", {t-1} as "t-", L_0 / L_T / L_simple, SNR_t, the variance options'
# names, the exponent of 2.2e-05, and the interpolation's x_a, x_b and the latent z_t.
SYMBOLS = {"x", "p", "t", "l", "l_t", "l_simple", "snr_t", "x_t", "fixed_large", "fixed_small", "e",
           "x_a", "x_b", "z_t"}


# ---- lint: the lesson files and the UI table ---------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(LESSONS.glob("*.zh.md")), ids=lambda p: p.name)
def test_lesson_uses_full_width_punctuation(path):
    assert half_width_punctuation(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("key", sorted(UI["zh"]))
def test_ui_string_uses_full_width_punctuation(key):
    assert half_width_punctuation(UI["zh"][key]) == []


@pytest.mark.parametrize("key", sorted(UI["zh"]))
def test_ui_string_is_translated(key):
    assert english_words(UI["zh"][key], SYMBOLS) == []


def test_every_ui_string_has_a_translation():
    """A key missing from UI["zh"] falls back to English silently."""
    assert set(UI["zh"]) == set(UI["en"])


def test_the_bound_is_not_called_a_lower_bound():
    """The plotted quantity is the negative ELBO, an upper bound on -log p(x_0)."""
    zh = [v for k, v in UI["zh"].items() if k.startswith(("vlb", "toy_title")) or "变分" in v]
    assert zh and not any("变分下界" in v for v in zh)
    assert all("负 ELBO" in UI["zh"][k] for k in ("vlb_button", "vlb_plot", "vlb_title"))


def test_model_info_quotes_the_measured_speed_up():
    """bench/RESULTS.md: DDIM-50 x 16 in 9.69 s (large) against 4.05 s (small)."""
    assert all("2.4×" in UI[lang]["model_info"] for lang in UI)


# ---- what the handlers write ------------------------------------------------------------------------------
def figure_text(fig) -> list[str]:
    """Every string a figure shows: title, axis and legend titles, annotations (subplot titles), trace names,
    hover templates and texts."""
    if hasattr(fig, "plot"):                                   # PlotData, what common.plot_data returns
        fig = load(fig)
    elif hasattr(fig, "to_json"):                              # a plotly go.Figure
        fig = json.loads(fig.to_json())
    out = []

    def title(v):
        t = v.get("title") if isinstance(v, dict) else None
        t = t.get("text") if isinstance(t, dict) else t
        if t:
            out.append(t)
    layout = fig.get("layout", {})
    title(layout)
    title(layout.get("legend"))
    for k, v in layout.items():
        if k.startswith(("xaxis", "yaxis")):
            title(v)
    out += [a["text"] for a in layout.get("annotations", []) if a.get("text")]
    for trace in fig["data"]:
        for k in ("name", "hovertemplate", "text", "hovertext", "texttemplate"):
            v = trace.get(k)
            out += [v] if isinstance(v, str) else [s for s in v if isinstance(s, str)] if isinstance(v, list) else []
    return out


def texts(outputs) -> list[str]:
    """The Markdown strings and figure texts among a handler's outputs (images and states are skipped)."""
    out = []
    for o in outputs:
        if isinstance(o, str):
            out.append(o)
        elif hasattr(o, "plot") or hasattr(o, "to_json"):
            out += figure_text(o)
        elif isinstance(o, dict) and isinstance(o.get("labels"), dict):   # a stage's data: the page writes its labels
            out += [v for v in o["labels"].values() if isinstance(v, str)]
    return out


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/conftest.py


@pytest.fixture(scope="module")
def toy_state():
    """A briefly trained toy model's state, as the Train button leaves it."""
    return list(training.train_toy("two-moons", steps=30, yield_s=0))[-1][2]


@pytest.fixture
def tiny_pipe(monkeypatch):
    """An untrained stand-in with T = 30, so that reverse.compare's full DDPM run stays quick."""
    from ddpm import UNet, make_schedule
    from ddpm.pretrained import Pipeline
    torch.manual_seed(0)
    unet = UNet(channels=8, channel_mult=(1, 2), attention_levels=(), num_classes=10).eval()
    small = Pipeline(name="tiny", model=unet,
                     schedule=make_schedule("linear", 30, 1e-3, 0.3), prediction="epsilon", data_shape=(1, 28, 28),
                     classes=reverse.pipe().classes, device=torch.device("cpu"))
    monkeypatch.setattr(reverse, "pipe", lambda model=None: small)


def _reverse_run(lang):
    return list(reverse.sample("Sneaker", "ddim", 3, 0.0, 3.0, 0, 1, lang=lang))


# name -> lang -> the handler's outputs (every update of a generator)
HANDLERS = {
    "forward": lambda lang, **_: forward.forward("sneaker", 500, "linear", 1000, 1e-4, 0.02, lang),
    "forward.stage_data": lambda lang, **_: [forward.stage_data("sneaker", 321, "cosine", 500, 1e-4, 0.02, lang)],
    "forward.compare": lambda lang, **_: forward.compare("bag", 300, "linear", "cosine", lang=lang),
    "forward.relabel": lambda lang, **_: forward.relabel("bag", 300, "linear", "sigmoid", 1000, 1e-4, 0.02, lang),
    "posterior": lambda lang, **_: posterior.posterior("trouser", 487, "cosine", 1000, lang=lang),
    "posterior.stage_data": lambda lang, **_: [posterior.relabel("trouser", 0, "linear", 1000, 1e-4, 0.02, 0, lang)],
    "training.vlb_plot": lambda lang, **_: training.vlb_plot(2, 50, lang),
    "training.train_toy": lambda lang, **_: [o for out in training.train_toy("rings", 30, yield_s=0, lang=lang)
                                             for o in out],
    "training.flow_data": lambda lang, state, **_: [training.flow_data(state, "two-moons", lang)],
    "training.flow_reset": lambda lang, state, **_: training.flow_reset(state, "two-moons", lang),
    "training.relabel": lambda lang, state, **_: training.relabel(state, 40, "two-moons", True, lang),
    "reverse.preview": lambda lang, **_: reverse.preview(5, 4, lang),
    "reverse.sample": lambda lang, **_: [o for up in _reverse_run(lang) for o in up[:3]],
    "reverse.visited": lambda lang, **_: [reverse.visited(list(range(100)), lang)],
    "reverse.scrub": lambda lang, **_: reverse.scrub(_reverse_run(lang)[-1][3], 1, lang),
    "reverse.from_image": lambda lang, **_: [o for up in reverse.from_image("sneaker", 100, "any", "ddim", 5, 0.0, 1.0,
                                                                            0, 1, lang=lang) for o in up[:3]],
    "reverse.compare": lambda lang, tiny, **_: [o for up in reverse.compare("Bag", 5, 3.0, 0, 1, lang=lang)
                                                for o in up],
}


@pytest.mark.parametrize("name", list(HANDLERS))
def test_handler_writes_the_chosen_language(name, request, monkeypatch, toy_state):
    if name == "training.relabel":                            # the bound at test size, not the button's 8 images
        plot = training.vlb_plot
        monkeypatch.setattr(training, "vlb_plot", lambda lang="en": plot(2, 50, lang))
    tiny = request.getfixturevalue("tiny_pipe") if name == "reverse.compare" else None
    zh = texts(HANDLERS[name]("zh", state=toy_state, tiny=tiny))
    en = texts(HANDLERS[name]("en", state=toy_state, tiny=tiny))   # after zh: the caches keep languages apart
    assert zh, "the handler wrote no text"
    for text in zh:
        assert english_words(text, SYMBOLS) == [], text
        assert half_width_punctuation(text) == [], text
    assert "\n".join(en) != "\n".join(zh)
    assert any(english_words(text) for text in en), "the English output has no English words: the check is blind"


def test_cached_figures_follow_the_language():
    """The parts that do not move with t are cached per schedule and language: asking for one language
    never hands out the other's figure."""
    from ddpm import make_schedule
    s = make_schedule("linear", 1000)
    for _ in range(2):
        en, zh = (figure_text(forward.curves_figure(s, 10, lang)) for lang in ("en", "zh"))
        assert "timestep t" in en and "时间步 t" in zh and "timestep t" not in zh
        en, zh = (figure_text(posterior.variance_figure(s, 10, lang)) for lang in ("en", "zh"))
        assert "timestep t" in en and "时间步 t" in zh
    x = torch.zeros(1, 1, 8, 8)
    assert "density" in figure_text(forward.histogram_figure(x, 3, "en"))
    assert "概率密度" in figure_text(forward.histogram_figure(x, 3, "zh"))


def test_english_output_is_unchanged():
    """What the API and the existing English tests rely on."""
    _, note = forward.compare("bag", 300, "linear", "cosine")
    assert note.startswith("**linear** (top) vs **cosine** (bottom)")
    eq = forward.forward("sneaker", 500)[3]
    assert eq.endswith("(Ho et al. 2020, Eq. 4)") and "$, $\\bar\\alpha_{500}" in eq
    assert "(Ho et al. 2020, Eq. 6–7; at t = 0 the paper's ᾱ₋₁ = 1)" in posterior.posterior("trouser", 5)[4]


@pytest.mark.parametrize("module", [forward, posterior, training], ids=lambda m: m.__name__)
def test_tabs_pass_the_app_language_to_their_handlers(module):
    """Every live view and the language switch's re-render read the app's language State (last input)."""
    with gr.Blocks():
        lang = gr.State("en")
        parts = module.build(Text("en", state=lang))
    for fn, inputs, _ in parts["refresh"]:
        assert inputs[-1] is lang, fn.__name__
    inputs, outputs = parts["on_lang_io"]
    assert inputs[-1] is lang and len(outputs) >= 1
