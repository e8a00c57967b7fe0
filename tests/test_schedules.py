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
    sig = 1 / (1 + np.exp(-np.linspace(-6, 6, T)))
    sig = (sig - sig.min()) / (sig.max() - sig.min())
    np.testing.assert_allclose(make_schedule("sigmoid", T, 1e-4, 0.02).betas.numpy(), sig * (0.02 - 1e-4) + 1e-4)
    # cosine: Nichol & Dhariwal's alpha-bar, recomputed directly (not through the betas)
    f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2             # noqa: E731
    abar = np.array([f(t + 1) / f(0) for t in range(T)])
    got = make_schedule("cosine", T).alphas_cumprod.numpy()
    np.testing.assert_allclose(got[:-5], abar[:-5], rtol=1e-10)                    # the clipped tail differs
    assert make_schedule("cosine", T).betas.max().item() <= 0.999


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
