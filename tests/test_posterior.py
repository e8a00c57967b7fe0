"""ddpm/posterior.py: q(x_{t-1} | x_t, x_0) against Bayes' rule evaluated numerically on a grid."""
import pytest
import torch

from ddpm import make_schedule, predict_eps, predict_x0, q_posterior, q_sample
from ddpm.posterior import v_target


def _normal_logpdf(x, mean, var):
    return -0.5 * (x - mean) ** 2 / var - 0.5 * torch.log(2 * torch.pi * var)


@pytest.mark.parametrize("kind,t", [("linear", 1), ("linear", 487), ("linear", 999), ("cosine", 250)])
def test_posterior_is_bayes_rule(kind, t):
    """q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0): normalise the product on a fine grid and
    compare its mean and variance with Eq. 7."""
    s = make_schedule(kind, 1000)
    x0, xt = torch.tensor(0.6, dtype=torch.float64), torch.tensor(-0.3, dtype=torch.float64)
    grid = torch.linspace(-8, 8, 400_001, dtype=torch.float64)                   # values of x_{t-1}
    beta, abar_prev = s.betas[t], s.alphas_cumprod_prev[t]
    log_p = (_normal_logpdf(xt, (1 - beta).sqrt() * grid, beta)                  # q(x_t | x_{t-1})
             + _normal_logpdf(grid, abar_prev.sqrt() * x0, 1 - abar_prev))       # q(x_{t-1} | x_0)
    w = torch.exp(log_p - log_p.max())
    w = w / w.sum()
    mean_num = (w * grid).sum()
    var_num = (w * (grid - mean_num) ** 2).sum()
    mean, var, logvar = q_posterior(s, x0.reshape(1, 1), xt.reshape(1, 1), t)
    if t == 0:
        return
    assert mean.item() == pytest.approx(mean_num.item(), abs=1e-6)
    assert var.item() == pytest.approx(var_num.item(), rel=1e-3)
    assert logvar.item() == pytest.approx(torch.log(var).item())


def test_posterior_at_t0_is_x0(linear):
    x0, xt = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    mean, var, _ = q_posterior(linear, x0, xt, 0)
    assert torch.allclose(mean, x0, atol=1e-6) and var.abs().max() == 0


@pytest.mark.parametrize("t", [0, 10, 500, 999])
def test_prediction_round_trips(linear, t):
    g = torch.Generator().manual_seed(t)
    x0 = torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    xt = q_sample(linear, x0, t, eps)
    assert torch.allclose(predict_x0(linear, eps, xt, t, "epsilon"), x0, atol=1e-6 if t < 999 else 1e-3)
    assert torch.allclose(predict_x0(linear, x0, xt, t, "x0"), x0)
    assert torch.allclose(predict_x0(linear, v_target(linear, x0, eps, t), xt, t, "v"), x0, atol=1e-10)
    assert torch.allclose(predict_eps(linear, x0, xt, t), eps, atol=1e-8)
    with pytest.raises(ValueError, match="unknown prediction"):
        predict_x0(linear, eps, xt, t, "score")
