"""lessons/predict.py: each reveal measures the truth it claims, on the tab's own settings."""
import gradio as gr
import numpy as np
import pytest
import torch

from ddpm import make_schedule, q_sample
from lessons import predict, training
from lessons.common import load_image, noise_like


def test_contrast_t_is_where_the_noise_matches_the_picture():
    s = make_schedule("linear", 1000)
    t = predict.contrast_t("sneaker", "linear", 1000, 1e-4, 0.02)
    std = load_image("sneaker").std().item()
    assert s.sqrt_one_minus_alphas_cumprod[t] >= s.sqrt_alphas_cumprod[t] * std
    assert s.sqrt_one_minus_alphas_cumprod[t - 1] < s.sqrt_alphas_cumprod[t - 1] * std
    # the cosine schedule keeps the picture longer (the forward lesson's claim)
    assert predict.contrast_t("sneaker", "cosine", 1000, 1e-4, 0.02) > t


def test_recognition_t_is_where_the_matched_filter_first_fails():
    t = predict.recognition_t("bag", "linear", 1000, 1e-4, 0.02)
    s = make_schedule("linear", 1000)
    x0 = load_image("bag")
    names = ["sneaker", "trouser", "coat", "dress", "sandal", "shirt", "pullover", "tshirt", "ankle-boot"]
    cands = torch.cat([x0] + [load_image(n) for n in names]).flatten(1)
    cands = (cands - cands.mean(1, keepdim=True)) / cands.std(1, keepdim=True)

    def picks_x0(k):
        x = q_sample(s, x0, k, noise_like(x0)).flatten()
        return int(((x - x.mean()).float() @ cands.T).argmax()) == 0
    assert 0 < t < 999 and not picks_x0(t) and picks_x0(t - 1) and picks_x0(t // 2)
    assert "t = 300" in predict.forward_reveal(300, "bag") and f"t = {t}" in predict.forward_reveal(300, "bag")


@pytest.mark.parametrize("t", [0, 1, 500, 999])
def test_posterior_reveal_compares_the_two_variances(t):
    s = make_schedule("cosine", 1000)
    md = predict.posterior_reveal("smaller", t, "cosine", 1000)
    assert md.startswith("✅") and f"{s.posterior_variance[t].item():.5g}" in md and f"{s.betas[t].item():.5g}" in md
    assert predict.posterior_reveal("larger", t, "cosine", 1000).startswith("❌")
    assert "更小" in predict.posterior_reveal("smaller", t, "cosine", 1000, lang="zh")
    with pytest.raises(gr.Error):
        predict.posterior_reveal("bigger", t)


def test_training_reveal_measures_a_loss_above_zero():
    md = predict.training_reveal("yes", None, "two-moons")
    loss = float(md.split("L_simple = ")[1].split("**")[0])
    assert md.startswith("❌") and 0.1 < loss < 1.0                    # the irreducible variance of eps given x_t
    state = list(training.train_toy("two-moons", steps=30, yield_s=0))[-1][2]
    trained = predict.training_reveal("no", state, "two-moons")
    assert trained.startswith("✅") and "trained here" in trained
    assert float(trained.split("L_simple = ")[1].split("**")[0]) > loss   # 30 steps: worse than the shipped model


def test_reverse_reveal_finds_the_first_clean_step_count():
    pic, md = predict.reverse_reveal(10, "Sneaker", 3)
    assert pic.ndim == 3 and pic.shape[1] > 8 * pic.shape[0] // 2            # one tile per step count, in a row
    clean = int(md.split("Measured: ")[1].split(" steps")[0])
    gaps = dict((int(k), float(v)) for k, v in (p.split(": ") for p in md.split("count: ")[1].split(").")[0].split(" · ")))
    assert list(gaps) == list(predict.STEP_COUNTS) and clean in gaps
    assert gaps[clean] < predict.CLEAN and all(g >= predict.CLEAN for k, g in gaps.items() if k < clean)
    assert gaps[1] > 3 * gaps[predict.STEP_COUNTS[-1]]                     # more steps, closer to the reference
    for bad in ((0, "Sneaker"), (10, "Hat")):
        with pytest.raises(gr.Error):
            predict.reverse_reveal(*bad)
    assert np.isfinite(gaps[clean])
