"""lessons/latent.py (the latent-diffusion tab) and lessons/interpolate.py (the reverse tab's interpolation):
the handlers hand on what ddpm computes, unchanged."""
import base64

import gradio as gr
import numpy as np
import pytest
import torch

from ddpm import q_sample
from ddpm.pretrained import load_pretrained
from lessons import interpolate, latent, reverse
from zh_text import english_words


def _f32(p: dict) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(p["data"]), "<f4").copy()).reshape(p["c"], p["h"], p["w"])


@pytest.mark.parametrize("typed, want", [
    ("sneaker", "Sneaker"), ("Sneakers", "Sneaker"), ("运动鞋", "Sneaker"), ("  Ankle Boot ", "Ankle boot"),
    ("短靴", "Ankle boot"), ("T-shirt/top", "T-shirt/top"), ("pants", "Trouser"), ("包", "Bag"), ("", None),
    (None, None),
])
def test_prompts_are_class_names_in_either_language(typed, want):
    assert latent.parse_prompt(typed) == want


def test_an_unknown_prompt_says_what_a_prompt_is_here():
    with pytest.raises(gr.Error, match="one class name"):
        latent.parse_prompt("a red sneaker on a beach")
    with pytest.raises(gr.Error, match="negative prompt"):
        latent.check("sneaker", "dragon", 3.0, 10, 0, 2)


def test_stage_data_is_what_ddpm_computes():
    """x_0, z_0 = E(x_0), the reconstruction and the decodings D(z_t) on the slider's grid, as the page receives
    them: the decodings equal pipe.decode(q_sample(z_0, t, eps')) (Eq. 4 on the latents), to the uint8 step."""
    p = latent.pipe()
    d = latent.stage_data("sneaker", 500, 3)
    x0 = reverse.to_model_image("sneaker")
    assert torch.allclose(_f32(d["x0"]), (x0 * 2 - 1)[0], atol=1e-6)
    z0 = p.encode(x0)
    assert torch.allclose(_f32(d["z0"]), z0[0], atol=1e-5)
    assert torch.allclose(_f32(d["rec"]), (p.decode(z0) * 2 - 1)[0], atol=1e-5)
    eps_z = _f32(d["eps_z"])[None]
    frames = np.frombuffer(base64.b64decode(d["frames"]), np.uint8).reshape(-1, 28, 28)
    assert frames.shape[0] == 200 and d["step"] == 5
    for t in (0, 250, 995):
        want = (p.decode(q_sample(p.schedule, z0, t, eps_z)) * 255).round().to(torch.uint8)[0, 0].numpy()
        assert np.abs(frames[t // 5].astype(int) - want.astype(int)).max() <= 1
    assert d["labels"]["numbers"].startswith("Reconstruction error")
    zh = latent.stage_data("sneaker", 500, 3, "zh")["labels"]
    assert all(english_words(v, {"x_t", "z_t", "e", "d"}) == [] for v in zh.values()), zh


def test_generate_streams_both_models_as_their_pipelines_sample():
    """The last update holds exactly pipe.sample's images, for the latent and for the pixel model."""
    ups = list(latent.generate("运动鞋", "", 3.0, 6, 2, 2))
    last = ups[-1]
    kw = dict(n=2, steps=6, labels=["Sneaker"], guidance_scale=3.0, seed=2)
    want_lat = latent.pipe().sample(**kw)
    want_pix = load_pretrained("fashion-mnist", precision="auto").sample(**kw)
    assert np.array_equal(last[0], latent._grid(want_lat)) and np.array_equal(last[3], latent._grid(want_pix))
    assert "Step 6/6" in last[5] and "| 784 | 196 |" in last[5]
    neg = list(latent.generate("sneaker", "sandal", 3.0, 6, 2, 2))[-1]
    assert not np.array_equal(neg[0], last[0])                        # the negative prompt changes the pictures
    zh = list(latent.generate("sneaker", "", 3.0, 2, 0, 1, "zh"))[-1][5]
    assert english_words(zh) == [] and "倍" in zh


@pytest.mark.parametrize("args, match", [
    (("sneaker", "", 30.0, 10, 0, 2), "guidance"), (("sneaker", "", 3.0, 0, 0, 2), "steps"),
    (("sneaker", "", 3.0, 10, 0, 99), "n"), (("dragon", "", 3.0, 10, 0, 2), "class name"),
])
def test_generate_refuses_bad_values(args, match):
    with pytest.raises(gr.Error, match=match):
        next(latent.generate(*args))


def test_interpolation_row_is_pipeline_interpolate():
    trio, row, note = interpolate.interpolate("sneaker", "trouser", 300, 0.5, 1)
    p = reverse.pipe("fashion-mnist")
    want = p.interpolate(reverse.to_model_image("sneaker"), reverse.to_model_image("trouser"), 300,
                         [i / 6 for i in range(7)], seed=1)
    assert np.array_equal(row, interpolate._row(want, 3))
    assert trio.shape == (168, 4 * 168 + 3 * 8, 3) and "t = 300" in note
    zh = interpolate.interpolate("sneaker", "trouser", 300, 0.5, 1, "zh")[2]
    assert english_words(zh) == []
    with pytest.raises(gr.Error, match="lambda"):
        interpolate.interpolate("sneaker", "trouser", 300, 1.5)
    with pytest.raises(gr.Error, match="unknown example"):
        interpolate.interpolate("sneaker", "../../etc/passwd", 300, 0.5)


def test_the_stage_is_sent_only_when_the_tab_is_opened():
    """A class opening the page at once must not pay for a tab nobody looked at: the stage's data (~0.3 MB) is
    computed when the tab is opened (or deep-linked), once per page."""
    import app
    skip = gr.skip()
    assert latent.first_stage({"z0": "..."}, "sneaker", 500, 0) == skip                # the page has it
    d = latent.first_stage(None, "sneaker", 500, 0)
    assert d["frames"] == latent.stage_data("sneaker", 500, 0)["frames"]
    run = app.only_on("latent", latent.first_stage)
    assert run("forward", None, "sneaker", 500, 0) == skip                             # the page opened elsewhere
    assert run("latent", None, "sneaker", 500, 0)["t"] == 500
