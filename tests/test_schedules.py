"""ddpm/schedules.py against reference values and independent numpy re-implementations."""
import math

import numpy as np
import pytest
import torch

from ddpm import SCHEDULES, make_schedule, sampling_timesteps


def test_linear_reference_values(linear):
    # Values quoted for the paper's schedule (T = 1000, beta 1e-4 .. 0.02).
    assert linear.betas[0].item() == pytest.approx(1e-4)
    assert linear.betas[-1].item() == pytest.approx(0.02)
    assert linear.posterior_variance[487].item() == pytest.approx(0.00979, abs=5e-6)
    assert linear.posterior_variance[999].item() == pytest.approx(0.02, rel=1e-3)
    assert linear.alphas_cumprod[-1].item() == pytest.approx(4.04e-5, rel=0.01)   # x_T is nearly pure noise
    assert linear.posterior_variance[0].item() == 0.0


@pytest.mark.parametrize("kind", SCHEDULES)
def test_identities(kind):
    s = make_schedule(kind, 1000)
    assert s.betas.dtype == torch.float64 and s.betas.shape == (1000,)
    assert ((s.betas > 0) & (s.betas < 1)).all()
    assert (s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all()                  # strictly decreasing
    assert torch.allclose(s.alphas_cumprod_prev[1:], s.alphas_cumprod[:-1])
    assert torch.allclose(s.sqrt_alphas_cumprod ** 2 + s.sqrt_one_minus_alphas_cumprod ** 2,
                          torch.ones(1000, dtype=torch.float64))
    assert (s.posterior_variance <= s.betas + 1e-15).all()                        # beta-tilde <= beta
    assert torch.allclose(s.snr, s.alphas_cumprod / (1 - s.alphas_cumprod))
    # with no noise (x_t = sqrt(abar_t) x_0) the posterior mean must be sqrt(abar_{t-1}) x_0
    assert torch.allclose(s.posterior_mean_coef1 + s.posterior_mean_coef2 * s.sqrt_alphas_cumprod,
                          s.alphas_cumprod_prev.sqrt())


def test_kinds_against_numpy():
    T = 1000
    np.testing.assert_allclose(make_schedule("linear", T, 1e-4, 0.02).betas.numpy(), np.linspace(1e-4, 0.02, T))
    np.testing.assert_allclose(make_schedule("quadratic", T, 1e-4, 0.02).betas.numpy(),
                               np.linspace(1e-2, 0.02 ** 0.5, T) ** 2)
    # sigmoid: GeoDiff's betas as diffusers' beta_schedule="sigmoid" writes them, with no min-max renormalisation
    sig = 1 / (1 + np.exp(-np.linspace(-6, 6, T)))
    np.testing.assert_allclose(make_schedule("sigmoid", T, 1e-4, 0.02).betas.numpy(), sig * (0.02 - 1e-4) + 1e-4)
    # cosine: Nichol & Dhariwal's alpha-bar, recomputed directly (not through the betas)
    f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2             # noqa: E731
    abar = np.array([f(t + 1) / f(0) for t in range(T)])
    got = make_schedule("cosine", T).alphas_cumprod.numpy()
    np.testing.assert_allclose(got[:-5], abar[:-5], rtol=1e-10)                    # the clipped tail differs
    assert make_schedule("cosine", T).betas.max().item() <= 0.999


def test_sigmoid_reference_values():
    """Values printed by diffusers 0.42 (DDPMScheduler(beta_schedule="sigmoid"), float32) at T = 1000: beta_1 is
    sigmoid(-6) of the way from beta_start to beta_end, not beta_start itself."""
    s = make_schedule("sigmoid", 1000, 1e-4, 0.02)
    assert s.betas[0].item() == pytest.approx(1.49205e-4, rel=1e-5) and s.betas[0].item() > 1e-4
    assert s.betas[-1].item() == pytest.approx(0.0199508, rel=1e-5)
    assert s.alphas_cumprod[499].item() == pytest.approx(0.301931, rel=1e-5)
    assert s.alphas_cumprod[999].item() == pytest.approx(3.96818e-5, rel=1e-4)


def test_sigmoid_abar_is_jabri_et_al():
    """Jabri et al. 2022's schedule (denoising-diffusion-pytorch's sigmoid_beta_schedule, start -3, end 3, tau 1),
    recomputed from its alpha-bar curve: abar(t) = (sigmoid(3) - sigmoid(6 t/T - 3)) / (sigmoid(3) - sigmoid(-3))."""
    T = 1000
    sig = lambda v: 1 / (1 + np.exp(-v))                                           # noqa: E731
    abar = lambda u: (sig(3) - sig(6 * u - 3)) / (sig(3) - sig(-3))                 # noqa: E731
    want = abar(np.arange(1, T + 1) / T) / abar(0)
    s = make_schedule("sigmoid_abar", T, beta_start=0.5, beta_end=0.1)             # betas are ignored
    np.testing.assert_allclose(s.alphas_cumprod.numpy()[:-1], want[:-1], rtol=1e-9)   # the clipped last step differs
    assert s.alphas_cumprod[T // 2 - 1].item() == pytest.approx(0.5, abs=1e-3)    # the sigmoid's midpoint
    assert s.betas.max().item() == pytest.approx(0.999)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("nope")
    with pytest.raises(ValueError, match="at least 2"):
        make_schedule("linear", 1)
    with pytest.raises(ValueError, match="must not exceed"):
        make_schedule("linear", 100, 0.02, 1e-4)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        make_schedule("linear", 100, 0.0, 0.02)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        make_schedule("linear", 100, float("nan"), 0.02)


def test_sampling_timesteps():
    ts = sampling_timesteps(50, 1000)
    assert len(ts) == 50 and ts[0] == 999 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    assert sampling_timesteps(50, 1000, "leading") == list(range(980, -1, -20))
    assert sampling_timesteps(50, 1000, "trailing") == list(range(999, 18, -20))
    assert sampling_timesteps(1000, 1000) == list(range(999, -1, -1))
    for bad in (0, 1001):
        with pytest.raises(ValueError):
            sampling_timesteps(bad, 1000)
    with pytest.raises(ValueError, match="spacing"):
        sampling_timesteps(10, 1000, "uniform")


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_one_step_starts_at_the_noisiest_t(spacing):
    """A run from x_T ~ N(0, I) must call the network at T-1 first; one step at t = 0 would return the noise."""
    for T in (1000, 100, 2):
        assert sampling_timesteps(1, T, spacing) == [T - 1]


# Reference values printed by diffusers 0.42, DDIMScheduler(num_train_timesteps=1000, timestep_spacing=...)
# .set_timesteps(S): where float rounding matters (499.5 in linspace at S = 27, x.5 in trailing at S = 16),
# and trailing at S = 61, where diffusers' arange runs one element too long (its last is t = -1).
DIFFUSERS = {
    ("linspace", 27): ([999, 961, 922, 884, 845, 807], 499, [38, 0]),
    ("trailing", 16): ([999, 937, 874, 811, 749, 687], 499, [124, 61]),
    ("trailing", 61): ([999, 983, 966, 950, 933, 917], None, [32, 15]),
    ("leading", 3): ([666, 333, 0], None, [333, 0]),
}


@pytest.mark.parametrize("key", DIFFUSERS)
def test_spacings_match_diffusers(key):
    spacing, S = key
    head, middle, tail = DIFFUSERS[key]
    ts = sampling_timesteps(S, 1000, spacing)
    assert len(ts) == S and ts[:len(head)] == head and ts[-2:] == tail
    assert middle is None or middle in ts


def test_spacings_match_diffusers_everywhere():
    """Every S from 2 to T, all three spacings, against the scheduler itself (where diffusers is installed:
    `pip install -r bench/requirements.txt`)."""
    diffusers = pytest.importorskip("diffusers")
    for T in (1000, 37):
        for spacing in ("linspace", "leading", "trailing"):
            d = diffusers.DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing)
            for S in range(2, T + 1):
                d.set_timesteps(S)
                assert sampling_timesteps(S, T, spacing) == d.timesteps.tolist()[:S], (T, spacing, S)
