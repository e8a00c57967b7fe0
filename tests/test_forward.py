"""ddpm/forward.py: the closed form q(x_t | x_0) against Monte Carlo and against the Markov chain."""
import pytest
import torch

from ddpm import make_schedule, q_mean_variance, q_sample


def test_q_sample_monte_carlo(linear):
    g = torch.Generator().manual_seed(0)
    x0 = torch.linspace(-1, 1, 8).reshape(1, 1, 2, 4)                   # 8 pixels with different values
    n, t = 200_000, 300
    noise = torch.randn((n, 1, 2, 4), generator=g, dtype=torch.float64)
    xt = q_sample(linear, x0.double().expand(n, -1, -1, -1), t, noise)
    mean, var = q_mean_variance(linear, x0.double(), t)
    assert torch.allclose(xt.mean(0, keepdim=True), mean, atol=0.01)
    assert torch.allclose(xt.var(0), var.expand(1, 1, 2, 4)[0], rtol=0.01)


def test_closed_form_equals_the_markov_chain():
    """Eq. 4 is what t steps of q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) give."""
    s = make_schedule("cosine", 50)
    g = torch.Generator().manual_seed(1)
    n, t = 100_000, 30
    x = torch.full((n,), 0.7, dtype=torch.float64)
    for k in range(t + 1):                                                # steps 0..t
        x = (1 - s.betas[k]).sqrt() * x + s.betas[k].sqrt() * torch.randn(n, generator=g, dtype=torch.float64)
    mean, var = q_mean_variance(s, torch.full((1,), 0.7, dtype=torch.float64), t)
    assert x.mean().item() == pytest.approx(mean.item(), abs=0.01)
    assert x.var().item() == pytest.approx(var.item(), rel=0.02)


def test_per_item_timesteps(linear):
    x0, eps = torch.ones(3, 1, 2, 2), torch.zeros(3, 1, 2, 2)
    xt = q_sample(linear, x0, torch.tensor([0, 10, 999]), eps)
    assert torch.allclose(xt[:, 0, 0, 0], linear.sqrt_alphas_cumprod[[0, 10, 999]].float())
    with pytest.raises(IndexError):
        q_sample(linear, x0, 1000, eps)
    with pytest.raises(IndexError):
        q_sample(linear, x0, -1, eps)
