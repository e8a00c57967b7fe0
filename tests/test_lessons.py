"""lessons/forward.py, posterior.py, reverse.py, common.py: the handlers, called directly (no server)."""

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

from ddpm import make_schedule, q_posterior
from figures import array, load
from lessons import common, forward, posterior, reverse


def _save(tmp_path, arr, name, mode=None):
    p = tmp_path / name
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(p)
    return str(p)


def test_forward_outputs_and_formula_numbers():
    xt, x0, eps, eq, film, curves, hist = forward.forward("sneaker", 500, "linear", 1000, 1e-4, 0.02)
    s = make_schedule("linear", 1000)
    assert xt.shape == x0.shape and xt.dtype == np.uint8
    assert f"{s.sqrt_alphas_cumprod[500].item():.5f}" in eq and f"{s.sqrt_one_minus_alphas_cumprod[500].item():.5f}" in eq
    assert film.shape[1] > film.shape[0] * 4                               # a horizontal strip
    curves, hist = load(curves), load(hist)
    assert len(curves["data"]) >= 5 and hist["data"][0]["type"] == "bar"


def test_forward_figures_are_valid_plotly_with_the_marker_at_t():
    """The figures are written as plain dicts (fast); plotly itself must accept them, and the markers must
    sit on the schedule's own values at t."""
    s = make_schedule("cosine", 500)
    fig = load(forward.curves_figure(s, 123))
    go.Figure(fig)                                                         # raises on any invalid property
    markers = [tr for tr in fig["data"] if tr.get("mode") == "markers"]
    expected = [s.betas[123], s.alphas_cumprod[123], s.sqrt_alphas_cumprod[123],
                s.sqrt_one_minus_alphas_cumprod[123], s.snr[123].log()]
    assert [m["x"] for m in markers] == [[123]] * 5
    assert np.allclose([m["y"][0] for m in markers], [float(v) for v in expected])
    assert {sh["x0"] for sh in fig["layout"]["shapes"]} == {123} and len(fig["layout"]["shapes"]) == 3
    lines = [tr for tr in fig["data"] if tr.get("mode") == "lines"]
    x, y = array(lines[1]["x"]), array(lines[1]["y"])
    assert np.allclose(y[-1], s.alphas_cumprod[-1].item()) and x[-1] == 499 and len(x) <= 400
    # another t moves only the markers; the cached curves are not mutated
    fig2 = load(forward.curves_figure(s, 7))
    assert fig2["data"][:5] == fig["data"][:5] and fig2["layout"]["shapes"][0]["x0"] == 7
    # the histogram is a density: bars integrate to 1 over [-4, 4]
    x = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    hist = load(forward.histogram_figure(x, 999))
    go.Figure(hist)
    bars = hist["data"][0]
    assert abs(sum(bars["y"]) * bars["width"] - 1) < 1e-6
    var = load(posterior.variance_figure(s, 123))
    go.Figure(var)
    assert np.allclose(var["data"][-1]["y"], [s.betas[123].item(), s.posterior_variance[123].item()])


def _decoded(entry, dtype=np.float32):
    import base64
    return np.frombuffer(base64.b64decode(entry), dtype=np.dtype(dtype).newbyteorder("<"))


def test_stage_data_is_what_ddpm_computed():
    """The forward stage's payload: x_0, its eps and the schedule's own tables; combined as the page combines them
    (Eq. 4) they give ddpm.q_sample at every t."""
    from ddpm import q_sample
    d = forward.stage_data("photo-cat", 321, "cosine", 500, 1e-4, 0.02)
    s = make_schedule("cosine", 500)
    assert d["T"] == 500 and d["t"] == 321 and (d["x0"]["c"], d["x0"]["h"], d["x0"]["w"]) == (3, 128, 128)
    for name in ("betas", "alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod", "snr",
                 "posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance"):
        assert np.array_equal(_decoded(d["tables"][name], np.float64), getattr(s, name).numpy()), name
    x0, eps = common.load_image("photo-cat"), common.noise_like(common.load_image("photo-cat"))
    assert np.array_equal(_decoded(d["x0"]["data"]), x0.numpy().ravel())
    assert np.array_equal(_decoded(d["eps"]["data"]), eps.numpy().ravel())
    a, b = _decoded(d["tables"]["sqrt_alphas_cumprod"], np.float64), _decoded(d["tables"]["sqrt_one_minus_alphas_cumprod"], np.float64)
    for t in (0, 321, 499):
        page = a[t] * _decoded(d["x0"]["data"]) + b[t] * _decoded(d["eps"]["data"])
        assert np.abs(page - q_sample(s, x0, t, eps).numpy().ravel()).max() < 1e-6
    assert d["labels"]["x0"] == "x₀ (data)" and forward.stage_data(lang="zh")["labels"]["x0"] == "x₀（原图）"
    p = posterior.stage_data("trouser", 500, "linear", 1000, seed=3)
    z = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    assert np.array_equal(_decoded(p["z"]["data"]), z.numpy().ravel())      # the draw's noise, as /posterior's


def test_forward_image_changes_with_t_and_is_noise_at_the_end():
    a = forward.forward("sneaker", 10)[0]
    b = forward.forward("sneaker", 900)[0]
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10
    # same noise for every t: t = 0 is almost the image itself
    x0 = forward.forward("sneaker", 0)[1]
    assert np.abs(forward.forward("sneaker", 0)[0].astype(int) - x0.astype(int)).mean() < 3


def test_compare_two_schedules():
    img, note = forward.compare("bag", 300, "linear", "cosine")
    assert img.shape[0] > 100 and "cosine" in note


def test_posterior_formula_has_the_coefficients():
    s = make_schedule("cosine", 1000)
    out = posterior.posterior("trouser", 487, "cosine", 1000)
    eq = out[4]
    for v in (s.posterior_mean_coef1[487], s.posterior_mean_coef2[487], s.posterior_variance[487], s.betas[487]):
        assert common.fmt(v) in eq
    # the mean image is what q_posterior gives
    x0 = common.load_image("trouser")
    from ddpm import q_sample
    x_t = q_sample(s, x0, 487, common.noise_like(x0))
    mean, _, _ = q_posterior(s, x0, x_t, 487)
    assert np.array_equal(out[1], common.to_picture(mean))


@pytest.mark.parametrize("args,match", [
    (dict(t=1000), "t must lie"), (dict(t=-1), "t must lie"), (dict(t=float("nan")), "t must lie"),
    (dict(t=2.5), "whole number"), (dict(schedule="exponential"), "unknown schedule"),
    (dict(timesteps=1), "timesteps"), (dict(timesteps=10**9), "timesteps"), (dict(beta_start=0), "beta_start"),
    (dict(beta_end=1.0), "beta_end"), (dict(beta_start=0.05, beta_end=0.01), "must not exceed"),
    (dict(beta_start="abc"), "must be a number"), (dict(image="/etc/passwd"), "could not read"),
    (dict(image="no-such-example"), "no such image"),
])
def test_bad_values_give_clear_errors(args, match):
    for handler in (forward.forward, posterior.posterior):
        kw = dict(image="sneaker", t=10, schedule="linear", timesteps=1000, beta_start=1e-4, beta_end=0.02)
        kw.update(args)
        with pytest.raises(gr.Error, match=match):
            handler(**kw)


def test_uploads_of_every_kind(tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "rgb.jpg": _save(tmp_path, rng.integers(0, 256, (300, 500, 3), dtype=np.uint8), "rgb.jpg"),
        "rgba.png": _save(tmp_path, rng.integers(0, 256, (64, 64, 4), dtype=np.uint8), "rgba.png", "RGBA"),
        "grey.png": _save(tmp_path, rng.integers(0, 256, (1024, 1024), dtype=np.uint8), "grey.png"),
        "deep.png": _save(tmp_path, rng.integers(0, 65535, (50, 80), dtype=np.uint16), "deep.png"),
    }
    pal = tmp_path / "pal.gif"
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).convert("P").save(pal)
    files["pal.gif"] = str(pal)
    for name, path in files.items():
        x = common.load_image(path)
        assert x.shape[-1] == x.shape[-2] <= common.WORK_SIZE and -1 <= x.min() and x.max() <= 1, name
        assert x.shape[1] == (1 if name in ("grey.png", "deep.png") else 3), name
        forward.forward(path, 100)                                        # and the tab renders it


def test_corrupt_and_huge_uploads(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    (tmp_path / "text.png").write_text("not an image at all")
    for p in ("bad.png", "text.png"):
        with pytest.raises(gr.Error, match="could not read"):
            common.load_image(str(tmp_path / p))
    # a 12000 x 12000 PNG is refused from its header, before any pixel is decoded
    big = tmp_path / "huge.png"
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 12000, 12000, 8, 0, 0, 0, 0)                   # 8-bit greyscale header
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data       # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    body = zlib.compress(b"\x00" * 12001 * 64)                                   # only 64 rows: it never gets decoded
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    with pytest.raises(gr.Error, match="too large"):
        common.load_image(str(big))


def _drain(gen):
    return list(gen)


def test_reverse_streams_one_update_per_step_and_ends_with_the_final_grid():
    ups = _drain(reverse.sample("Sneaker", "ddim", 5, 0.0, 3.0, 0, 4))
    assert len(ups) >= 2 and "step 5/5" in ups[-1][2]
    final = reverse.pipe().sample(n=4, sampler="ddim", steps=5, guidance_scale=3.0, labels=["Sneaker"], seed=0)
    assert np.array_equal(ups[-1][0], reverse.grid_picture(final))
    stored = ups[-1][3]
    assert len(stored) == 6 and stored[0][0] == "start"                  # x_T plus one frame per step
    xt, x0, msg = reverse.scrub(stored, 2)
    assert np.array_equal(xt, reverse.grid_picture(stored[2][1].float() / 255)) and "t = " in msg
    assert stored[2][1].dtype == torch.uint8 and stored[2][1].shape == (4, 1, 28, 28)      # kept small
    gif = reverse.export_gif(stored)
    with Image.open(gif) as im:
        assert im.n_frames >= 6


@pytest.mark.parametrize("args,match", [
    (("Hat", "ddim", 5, 0, 3, 0, 4), "unknown class"), (("any", "euler", 5, 0, 3, 0, 4), "unknown sampler"),
    (("any", "ddim", 0, 0, 3, 0, 4), "steps"), (("any", "ddim", 1001, 0, 3, 0, 4), "steps"),
    (("any", "ddim", 5, 2, 3, 0, 4), "eta"), (("any", "ddim", 5, 0, 99, 0, 4), "guidance"),
    (("any", "ddim", 5, 0, 3, 0, 17), "n"), (("any", "ddim", 5, 0, 3, 0, 0), "n"),
    (("any", "ddim", 5, 0, float("nan"), 0, 4), "guidance"), (("any", "ddim", 5, 0, 3, -5, 4), "seed"),
    (("any", "ddim", 5, 0, 3, 0, 4, 1000), "guide while"), (("any", "ddim", 5, 0, 3, 0, 4, 2.5), "guide while"),
])
def test_reverse_bad_values(args, match):
    with pytest.raises(gr.Error, match=match):
        _drain(reverse.sample(*args))


def test_guidance_until_is_the_library_interval():
    """The slider beside s: guide while t <= until; T-1 is classic guidance at every step."""
    p = reverse.pipe()
    for until, interval in ((999, None), (300, (0, 300)), (None, p.guidance_interval)):
        ups = _drain(reverse.sample("Coat", "ddim", 4, 0.0, 4.0, 2, 2, until))
        want = p.sample(n=2, steps=4, guidance_scale=4.0, labels=["Coat"], seed=2, guidance_interval=interval)
        assert np.array_equal(ups[-1][0], reverse.grid_picture(want))
    classic = p.sample(n=2, steps=4, guidance_scale=4.0, labels=["Coat"], seed=2, guidance_interval=None)
    assert not np.array_equal(ups[-1][0], reverse.grid_picture(classic))    # the default really limits it


def test_each_shipped_model_is_one_choice_away():
    """The model radio: every choice samples with that model's own weights and guidance interval."""
    from ddpm.pretrained import load_pretrained
    grids = []
    for m in reverse.MODELS:
        ups = _drain(reverse.sample("Bag", "ddim", 4, 0.0, 3.0, 1, 2, None, m))
        p = load_pretrained(m, precision="auto")               # what the app uses: bfloat16 where the CPU has it
        assert p.precision == reverse.pipe(m).precision and p.model is reverse.pipe(m).model
        want = p.sample(n=2, steps=4, guidance_scale=3.0, labels=["Bag"], seed=1)
        assert np.array_equal(ups[-1][0], reverse.grid_picture(want))
        assert reverse.default_guidance_until(m) == (p.guidance_interval[1] if p.guidance_interval else 999)
        grids.append(ups[-1][0])
    assert len(reverse.MODELS) == 3 and all(not np.array_equal(grids[i], grids[j]) for i, j in ((0, 1), (0, 2), (1, 2)))
    assert [v for _, v in reverse.model_choices()] == list(reverse.MODELS)
    with pytest.raises(gr.Error, match="unknown model"):
        _drain(reverse.sample("Bag", "ddim", 4, 0.0, 3.0, 1, 2, None, "imagenet"))


def test_switching_to_the_4_step_model_hides_guidance_and_sets_its_steps():
    """Its guidance is distilled into the network: no scale to set, and its JSON's 4 steps become the default."""
    until, guidance, steps = reverse.model_settings("fashion-mnist-4step")
    assert until["visible"] is False and guidance["visible"] is False and steps["value"] == 4
    until, guidance, steps = reverse.model_settings("fashion-mnist")
    assert until["visible"] is True and guidance["visible"] is True and steps["value"] == 50
    assert until["value"] == reverse.default_guidance_until("fashion-mnist")


def test_from_image():
    ups = _drain(reverse.from_image("sneaker", 300, "any", "ddim", 20, 0.0, 1.0, 0, 2))
    from ddpm.samplers import timesteps_for
    assert "step 6/6" in ups[-1][2] and len(ups[-1][3]) == 1 + len(timesteps_for("ddim", 20, 1000, 300))


def test_compare_runs_both_samplers_from_the_same_noise(monkeypatch):
    """With a small untrained stand-in (T = 30) so that DDPM's every-step run stays quick."""
    from ddpm import UNet, make_schedule
    from ddpm.pretrained import Pipeline
    torch.manual_seed(0)
    small = Pipeline(name="tiny", model=UNet(channels=8, channel_mult=(1, 2), attention_levels=(), num_classes=10).eval(),
                     schedule=make_schedule("linear", 30, 1e-3, 0.3), prediction="epsilon", data_shape=(1, 28, 28),
                     classes=reverse.pipe().classes, device=torch.device("cpu"))
    monkeypatch.setattr(reverse, "pipe", lambda model=None: small)
    ups = _drain(reverse.compare("Bag", 10, 3.0, 0, 2))
    assert ups[0][1] is None and "DDIM-10" in ups[0][2]                  # DDIM first, DDPM still running
    assert ups[-1][1] is not None and "30/30" in ups[-1][2]
    x_T = small.initial_noise(2, 0)
    want = small.sample(n=2, sampler="ddpm", labels=["Bag"], guidance_scale=3.0, x_T=x_T)
    assert np.array_equal(ups[-1][1], reverse.grid_picture(want))


def test_reverse_preview_is_the_snow_that_generate_starts_from():
    pic, x0, msg = reverse.preview(5, 4)
    first = next(reverse.sample("any", "ddim", 5, 0.0, 3.0, 5, 4))
    assert np.array_equal(pic, first[0]) and x0 is None and "5" in msg
    other, _, _ = reverse.preview(6, 4)
    assert not np.array_equal(pic, other)                                # another seed, other snow
    assert "种子 5" in reverse.preview(5, 4, "zh")[2]
    with pytest.raises(gr.Error):
        reverse.preview(-1, 4)


def test_reverse_class_box_follows_the_language():
    """The class box shows Chinese names in Chinese while its values (the API's and deep links') stay English."""
    from lessons.i18n import Text
    with gr.Blocks():
        text = Text("en", state=gr.State("en"))
        parts = reverse.build(text)
    box = parts["label"]
    updates = dict(zip(text.components, text.updates("zh")))
    zh = updates[box]["choices"]
    assert zh[0] == ("任意（无条件生成）", "any")
    assert ("包", "Bag") in zh and ("运动鞋", "Sneaker") in zh and len(zh) == 11
    en = dict(zip(text.components, text.updates("en")))[box]["choices"]
    assert ("Bag", "Bag") in en and [v for _, v in en] == [v for _, v in zh]
