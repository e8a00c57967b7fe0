"""ddpm/pretrained.py: the shipped model loads offline and samples as documented."""
import json

import pytest
import torch

from ddpm.pretrained import ASSETS, load_pretrained

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture(scope="module")
def pipe():
    return load_pretrained("fashion-mnist", device="cpu")


def test_loads_offline_with_its_schedule(pipe):
    assert pipe.classes == CLASSES
    assert pipe.schedule.timesteps == 1000 and pipe.schedule.kind == "linear"
    assert pipe.schedule.betas[0].item() == pytest.approx(1e-4) and pipe.schedule.betas[-1].item() == pytest.approx(0.02)
    out = pipe.model(torch.randn(2, 1, 28, 28), torch.tensor([10, 900]), labels=None)
    assert out.shape == (2, 1, 28, 28)
    assert (ASSETS / "fashion-mnist.safetensors").stat().st_size < 20e6
    cfg = json.loads((ASSETS / "fashion-mnist.json").read_text())
    assert cfg["diffusion"]["objective"] == "pred_noise" and cfg["model"]["num_classes"] == 10
    # the sizes the model card states: the distilled default and its teacher
    assert pipe.num_parameters == 280_881
    assert load_pretrained("fashion-mnist-large", device="cpu").num_parameters == 1_114_209


def test_sample_shapes_ranges_and_determinism(pipe):
    state = torch.get_rng_state()
    a = pipe.sample(n=3, steps=5, labels=["Sneaker"], seed=7)
    b = pipe.sample(n=3, steps=5, labels=[7], seed=7)
    c = pipe.sample(n=3, steps=5, labels=["Sneaker"], seed=8)
    assert torch.equal(torch.get_rng_state(), state)                   # no global random state touched
    assert a.shape == (3, 1, 28, 28) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_guidance_and_class_change_the_output(pipe):
    base = dict(n=2, steps=5, seed=0)
    g0 = pipe.sample(**base, labels=["Bag"], guidance_scale=0.0)
    g3 = pipe.sample(**base, labels=["Bag"], guidance_scale=3.0)
    other = pipe.sample(**base, labels=["Trouser"], guidance_scale=3.0)
    uncond = pipe.sample(**base, labels=None)
    assert torch.equal(g0, uncond)                                     # s = 0 is the unconditional model, one pass
    assert (g3 - g0).abs().mean() > 0.01 and (g3 - other).abs().mean() > 0.01


def test_guidance_interval(pipe):
    """Guidance limited to an interval of t: the full interval is plain guidance; an interval that no
    visited t falls in is the plain conditional model (s = 1)."""
    base = dict(n=2, steps=5, seed=0, labels=["Bag", "Dress"], guidance_scale=3.0)
    g3, g1 = pipe.sample(**base, guidance_interval=None), pipe.sample(**{**base, "guidance_scale": 1.0})
    assert torch.equal(pipe.sample(**base, guidance_interval=(0, 999)), g3)
    # by default, the interval tuned for this model in its JSON (MODEL_CARD.md)
    lo, hi = pipe.guidance_interval
    assert 0 <= lo < hi < 999
    assert torch.equal(pipe.sample(**base), pipe.sample(**base, guidance_interval=(lo, hi)))
    assert torch.allclose(pipe.sample(**base, guidance_interval=(1, 199)), g1, atol=1e-6)   # visits 999, 749, 500, 250, 0
    middle = pipe.sample(**base, guidance_interval=(200, 600))
    assert (middle - g3).abs().mean() > 1e-3 and (middle - g1).abs().mean() > 1e-3


def test_one_ddim_step_denoises(pipe):
    """One DDIM step calls the network once, at t = T-1, and returns its x0 estimate, not the starting noise."""
    frames = list(pipe.progressive(n=4, sampler="ddim", steps=1, labels=["Trouser"], seed=0))
    assert [f.t for f in frames] == [999] and torch.equal(frames[0].x_t, frames[0].x0_pred)
    snow = (pipe.initial_noise(4, 0).clamp(-1, 1) + 1) / 2
    assert (frames[0].x_t - snow).abs().mean() > 0.3                    # far from the noise it started from
    # and smoother than snow (mean |horizontal difference|: 0.21 against 0.42; one step at t = 0 gave 0.42)
    tv = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()             # noqa: E731
    assert tv(frames[0].x_t) < 0.7 * tv(snow)
    # SDEdit with one step: from start_t, not from 0
    sd = list(pipe.progressive(n=1, sampler="ddim", steps=2, init_image=torch.zeros(1, 1, 28, 28), start_t=300))
    assert [f.t for f in sd] == [300]


def test_progressive_frames(pipe):
    frames = list(pipe.progressive(n=2, sampler="ddim", steps=4, seed=1))
    assert [f.t for f in frames] == [999, 666, 333, 0]
    assert torch.equal(frames[-1].x_t, pipe.sample(n=2, sampler="ddim", steps=4, seed=1))
    for f in frames:
        assert f.x0_pred.shape == (2, 1, 28, 28) and 0 <= f.x0_pred.min() and f.x0_pred.max() <= 1
    ddpm = list(pipe.progressive(n=1, sampler="ddpm", seed=1, variance="fixed_large", init_image=torch.zeros(1, 1, 28, 28),
                                 start_t=5))
    assert [f.t for f in ddpm] == [5, 4, 3, 2, 1, 0]


def test_init_image_start_t(pipe):
    """Starting from a real image at small t keeps it; at t = T-1 almost nothing of it survives."""
    from ddpm.data import FASHION_MNIST_DIR, is_fashion_mnist_dir, load_fashion_mnist
    if is_fashion_mnist_dir(FASHION_MNIST_DIR):
        x, _ = load_fashion_mnist(split="test")
        img = x[:1].float() / 255
    else:
        img = torch.zeros(1, 1, 28, 28)
        img[..., 8:20, 4:24] = 1.0
    near = pipe.sample(n=2, init_image=img, start_t=50, steps=50, seed=0)
    far = pipe.sample(n=2, init_image=img, start_t=999, steps=50, seed=0)
    assert (near - img).abs().mean() < 0.08
    assert (far - img).abs().mean() > 2 * (near - img).abs().mean()


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=0), "n must be"), (dict(sampler="euler"), "unknown sampler"), (dict(steps=0), "steps must be"),
    (dict(steps=1001), "steps must be"), (dict(steps=0, sampler="ddim"), "steps must be"), (dict(eta=1.5), "eta"), (dict(eta=float("nan")), "eta"),
    (dict(guidance_scale=-1), "guidance"), (dict(labels=["Hat"]), "unknown class"), (dict(labels=[10]), "unknown class"),
    (dict(init_image=torch.zeros(1, 1, 28, 28), start_t=1000), "start_t"), (dict(variance="learned"), "unknown variance"),
    (dict(guidance_interval=(500, 100)), "guidance_interval"), (dict(guidance_interval=(0, 1000)), "guidance_interval"),
    (dict(guidance_interval=(0.5, 10)), "guidance_interval"), (dict(guidance_interval=5), "guidance_interval"),
])
def test_bad_arguments(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe.sample(**{"n": 1, "steps": 2, **kwargs})


def test_unknown_model():
    with pytest.raises(ValueError, match="no shipped model"):
        load_pretrained("imagenet")


def test_concurrent_requests_do_not_change_each_others_results(pipe):
    """Every request draws from its own generator: four users at once get what each would get alone."""
    from concurrent.futures import ThreadPoolExecutor
    args = [dict(n=2, steps=4, seed=s, labels=["Coat"] if s % 2 else None) for s in range(4)]
    alone = [pipe.sample(**a) for a in args]
    with ThreadPoolExecutor(4) as ex:
        together = list(ex.map(lambda a: pipe.sample(**a), args))
    for a, b in zip(alone, together):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["swiss-roll", "two-moons", "8-gaussians", "checkerboard", "rings"])
def test_shipped_toys_sample_onto_their_shapes(name):
    from ddpm import make_toy
    toy = load_pretrained(name, device="cpu")
    pts = toy.sample(n=1000, sampler="ddpm", seed=0)
    assert pts.shape == (1000, 2) and toy.classes is None
    data = make_toy(name, 20000, seed=1)
    near = torch.cdist(pts, data).min(1).values                     # distance to the nearest real point
    noise = torch.cdist(torch.randn(1000, 2, generator=torch.Generator().manual_seed(0)), data).min(1).values
    assert near.median() < 0.06 and near.mean() < 0.5 * noise.mean(), (near.median(), near.mean(), noise.mean())


def test_bfloat16_precision_matches_float32_to_the_eye(pipe):
    """precision="bfloat16" runs the network under autocast (faster on recent CPUs): the images must
    stay what float32 gives, the same seed the same images, and the float32 weights untouched."""
    fast = load_pretrained("fashion-mnist", device="cpu", precision="bfloat16")
    assert fast.model is pipe.model and pipe.precision == "float32"    # one set of weights, shared
    kw = dict(n=4, steps=20, labels=["Sneaker", "Bag", "Trouser", "Dress"], seed=3)
    exact, approx = pipe.sample(**kw), fast.sample(**kw)
    assert approx.dtype == torch.float32 and torch.equal(approx, fast.sample(**kw))
    assert (approx - exact).abs().mean() < 0.02                          # grey levels: well under 1 %
    assert next(pipe.model.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        load_pretrained("fashion-mnist", device="cpu", precision="fp8")
    from ddpm.pretrained import cpu_has_native_bf16
    auto = load_pretrained("fashion-mnist", device="cpu", precision="auto")
    assert auto.precision == ("bfloat16" if cpu_has_native_bf16() else "float32")


def test_interpolation_endpoints_are_the_plain_runs(pipe):
    """Ho et al. Sec. 4.3: lam = 0 and 1 give the plain runs from x_a and x_b (same seed, same noise)."""
    xa, xb = pipe.sample(n=2, steps=10, labels=["Sneaker", "Trouser"], seed=0).chunk(2)
    out = pipe.interpolate(xa, xb, 400, [0.0, 0.5, 1.0], seed=3, steps=10)
    plain_a = pipe.sample(n=1, init_image=xa, start_t=400, seed=3, steps=10, guidance_scale=0)
    plain_b = pipe.sample(n=1, init_image=xb, start_t=400, seed=3, steps=10, guidance_scale=0)
    assert out.shape == (3, 1, 28, 28)
    assert torch.allclose(out[0], plain_a[0], atol=1e-4) and torch.allclose(out[2], plain_b[0], atol=1e-4)
    assert torch.allclose(pipe.interpolate(xa, xb, 400, 0.0, seed=3, steps=10), plain_a, atol=1e-5)
    mid = out[1]
    assert (mid - out[0]).abs().mean() > 0.02 and (mid - out[2]).abs().mean() > 0.02


def test_interpolation_from_small_t_is_a_cross_fade(pipe):
    """From a small t the mix survives nearly as it was; from a large t the model repaints it into one
    garment (further from the cross-fade)."""
    xa, xb = pipe.sample(n=2, steps=10, labels=["Sneaker", "Trouser"], seed=0).chunk(2)
    fade = 0.5 * xa + 0.5 * xb
    small = pipe.interpolate(xa, xb, 20, 0.5, seed=1, steps=50)
    large = pipe.interpolate(xa, xb, 800, 0.5, seed=1, steps=50)
    assert (small - fade).abs().mean() < 0.05
    assert (large - fade).abs().mean() > 2 * (small - fade).abs().mean()


@pytest.mark.parametrize("kwargs, match", [
    (dict(t=400, lam=1.5), "lam must lie"),
    (dict(t=1000, lam=0.5), "start_t"),
    (dict(t=400, lam=[]), "lam must lie"),
])
def test_interpolation_bad_arguments(pipe, kwargs, match):
    x = torch.rand(1, 1, 28, 28)
    with pytest.raises(ValueError, match=match):
        pipe.interpolate(x, x, **kwargs)
    with pytest.raises(ValueError, match="shape"):
        pipe.interpolate(torch.rand(2, 1, 28, 28), x, 400, 0.5)


def test_the_shipped_4_step_model():
    """fashion-mnist-4step (progressive distillation, ddpm/progressive.py): its JSON's 4 steps on a trailing grid,
    guidance built in (one conditional pass per step), deterministic, and its samples are their class."""
    from ddpm.evaluate import load_classifier
    fast = load_pretrained("fashion-mnist-4step", device="cpu")
    assert fast.default_steps == 4 and fast.spacing == "trailing" and fast.guidance_distilled == 3.0
    assert fast.prediction == "v" and fast.num_parameters == 280_881
    frames = list(fast.progressive(n=3, labels="Sneaker", seed=5))
    assert [f.t for f in frames] == [999, 749, 499, 249]                       # 4 steps from t = T - 1
    a = frames[-1].x_t
    assert a.shape == (3, 1, 28, 28) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, fast.sample(n=3, labels="Sneaker", seed=5)) and not torch.equal(a, fast.sample(n=3, labels="Sneaker", seed=6))
    calls = []
    hook = fast.model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        fast.sample(n=2, labels="Bag", guidance_scale=3.0)
    finally:
        hook.remove()
    assert calls == [2, 2, 2, 2]                                                # one pass of n per step: no 2n
    labels = list(range(10)) * 2
    with torch.no_grad():
        pred = load_classifier()(fast.sample(n=20, labels=labels, seed=0)).argmax(1)
    assert (pred == torch.tensor(labels)).float().mean() >= 0.85
    with pytest.raises(ValueError, match="distilled"):
        fast.sample(n=1, labels="Bag", negative_labels="Sandal")
