"""lessons/paths.py: the score field the page scrubs, the three samplers' paths from one noise, and the
steps plot read from assets/toy-steps.json; every number is what ddpm computes or what the model card says."""
import base64
import importlib.util
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

from ddpm import TOYS, load_pretrained, q_sample
from figures import array, load
from lessons import paths
from lessons.i18n import Text, lesson
from test_zh_text import SYMBOLS, figure_text
from zh_text import english_words

ROOT = Path(__file__).resolve().parent.parent
# people's names, and the English term the Chinese lesson glosses once: 分数（score）; Hyvärinen splits at the ä
NAMES = {"vincent", "ermon", "anderson", "tweedie", "robbins", "efron", "hyv", "rinen", "score"}


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/conftest.py


def _f32(s: str, *shape: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), "<f4").reshape(shape)


def test_score_data_is_what_ddpm_computes():
    d = paths.score_data("rings", 17)
    pipe = load_pretrained("rings")
    T, G, n = d["T"], d["n_grid"] ** 2, d["n"]
    assert (T, G, d["t"], d["range"]) == (pipe.timesteps, 441, 17, paths.LIM)
    field = torch.from_numpy(_f32(d["field"], T, G, 2).copy())
    np.testing.assert_allclose(_f32(d["scale"], T), torch.quantile(field.norm(dim=-1), 0.9, dim=1).numpy(), rtol=1e-6)
    # x_t = q_sample(x_0, t, ε) for the first n data points and one ε at every t
    data = _f32(d["data"], -1, 2)
    xt = _f32(d["xt"], T, n, 2)
    x0 = torch.from_numpy(data[:n].copy())
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    for t in (0, 50, 99):
        want = q_sample(pipe.schedule, x0, t, eps).numpy()
        np.testing.assert_allclose(xt[t], want, atol=2e-4)
    tab = np.frombuffer(base64.b64decode(d["tables"]["alphas_cumprod"]), "<f8")
    np.testing.assert_array_equal(tab, pipe.schedule.alphas_cumprod.numpy())
    assert paths.score_data("rings", 17)["field"] is d["field"]                # cached per toy


def test_paths_are_the_samplers_own_runs():
    fig = load(paths.paths_figure("two-moons"))
    ends = {tr["legendgroup"]: np.stack([array(tr["x"]), array(tr["y"])], 1) for tr in fig["data"]
            if tr.get("mode") == "markers" and tr.get("legendgroup")}
    pipe, flow = load_pretrained("two-moons"), load_pretrained("two-moons-flow")
    x_T = pipe.initial_noise(paths.N_PATHS, paths.PATH_SEED)
    want = {"ddpm": pipe.sample(paths.N_PATHS, sampler="ddpm", x_T=x_T, seed=paths.PATH_SEED),
            "ddim": pipe.sample(paths.N_PATHS, sampler="ddim", steps=100, eta=0.0, x_T=x_T),
            "flow": flow.sample(paths.N_PATHS, steps=100, x_T=x_T)}
    for k, v in want.items():
        np.testing.assert_allclose(ends[k], v.numpy(), atol=1e-5, err_msg=k)
    runs = paths.paths_of("two-moons")
    assert all(r.shape == (101, paths.N_PATHS, 2) and np.allclose(r[0], x_T.numpy()) for r in runs.values())


def test_steps_plot_reads_the_shipped_table_which_matches_the_model_card():
    spec = importlib.util.spec_from_file_location("toy_steps", ROOT / "assets" / "toy_steps.py")
    toy_steps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy_steps)
    card = toy_steps.from_card((ROOT / "assets" / "models" / "MODEL_CARD.md").read_text(encoding="utf-8"))
    tab = paths.step_table()
    assert {k: tab[k] for k in ("steps", "floor", "energy")} == card and set(tab["energy"]) == set(TOYS)
    moons = tab["energy"]["two-moons"]
    assert moons["ddim"][tab["steps"].index(10)] == 0.7379 and moons["ddim"][-1] == 0.0231   # the numbers
    fig = load(paths.steps_figure("two-moons"))
    lines = fig["data"]
    assert len(lines) == len(paths.STEP_METHODS) + 1
    for tr, (key, *_) in zip(lines, paths.STEP_METHODS):
        assert list(array(tr["x"])) == tab["steps"] and list(array(tr["y"])) == moons[key]
    assert list(array(lines[-1]["y"])) == [0.0015, 0.0015] and lines[-1]["line"]["dash"] == "dash"   # the floor
    assert fig["layout"]["xaxis"]["type"] == "log" and "4.9e-04" in fig["layout"]["annotations"][0]["text"]


def test_bad_input_gives_clear_errors():
    for call in (lambda: paths.score_data("donut"), lambda: paths.paths_figure("donut"),
                 lambda: paths.steps_figure("donut"), lambda: paths.figures("donut", "zh")):
        with pytest.raises(gr.Error, match="toy"):
            call()
    with pytest.raises(gr.Error, match="t must lie"):
        paths.score_data("two-moons", 100)
    with pytest.raises(gr.Error, match="whole number"):
        paths.score_data("two-moons", 2.5)


def test_figures_follow_the_language():
    en, zh = paths.figures("8-gaussians", "en"), paths.figures("8-gaussians", "zh")
    assert figure_text(en[0]) != figure_text(zh[0]) and figure_text(en[1]) != figure_text(zh[1])
    for fig in zh:
        assert english_words(" ".join(figure_text(fig)), SYMBOLS) == []


def test_chinese_lesson_has_no_english_words():
    assert english_words(lesson("paths", "zh"), NAMES) == []
    assert lesson("paths", "en") != lesson("paths", "zh")


def test_build_wires_the_stage():
    with gr.Blocks() as demo:
        text = Text("en", state=gr.State("en"))
        parts = paths.build(text)
    assert parts["t"].elem_id == "score-t" and (parts["t"].minimum, parts["t"].maximum) == (0, 99)
    assert parts["toy"].value == "two-moons"
    html = [b for b in demo.blocks.values() if isinstance(b, gr.HTML)]
    assert any('id="score-canvas"' in b.value for b in html)
    acc = [b for b in demo.blocks.values() if isinstance(b, gr.Accordion)]
    assert len(acc) == 1 and not acc[0].open and acc[0].label == "Paths, steps and the score"
    # opening it sends the field (0.7 MB): a learner who never opens the section never receives it
    sends = [d for d in demo.fns.values() if (acc[0]._id, "expand") in d.targets]
    assert len(sends) == 1 and sends[0].fn is paths.score_data
    # the app's language switch sets the hidden language box, whose change redraws both figures
    updates = dict(zip(text.components, text.updates("zh")))
    assert updates[parts["lang"]]["value"] == "zh"
    redraw = [d for d in demo.fns.values() if (parts["lang"]._id, "change") in d.targets]
    assert len(redraw) == 1 and redraw[0].fn is paths.figures
    assert [o._id for o in redraw[0].outputs] == [parts["paths"]._id, parts["steps"]._id]
    # the page scrubs t itself: the slider's change runs only JavaScript, no server function
    t_events = [d for d in demo.fns.values() if any(tr[0] == parts["t"]._id for tr in d.targets)]
    assert t_events and all(d.fn is None and "score.show" in d.js for d in t_events)
