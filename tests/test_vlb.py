"""ddpm/vlb.py: the bound's terms against closed forms."""
import math

import pytest
import torch

from ddpm import make_schedule, predict_eps
from ddpm.vlb import discretized_gaussian_log_likelihood, normal_kl, vlb_terms


def test_normal_kl_closed_form():
    # KL(N(1, 2) || N(0, 1)) = 0.5 (2 + 1 - 1 - ln 2)
    kl = normal_kl(torch.tensor(1.0), torch.tensor(math.log(2.0)), torch.tensor(0.0), torch.tensor(0.0))
    assert kl.item() == pytest.approx(0.5 * (2 + 1 - 1 - math.log(2)))
    assert normal_kl(torch.tensor(0.3), torch.tensor(-1.0), torch.tensor(0.3), torch.tensor(-1.0)).item() == 0


def test_discretized_likelihood_is_a_distribution_over_256_levels():
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    for mean, std in ((0.1, 0.05), (-0.9, 0.3), (0.99, 0.01)):
        logp = discretized_gaussian_log_likelihood(levels, torch.tensor(mean, dtype=torch.float64),
                                                   torch.tensor(math.log(std), dtype=torch.float64))
        assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-6)


def test_perfect_model_has_zero_kl_terms_and_the_closed_form_prior():
    """For data that is a single image, the ideal network recovers x_0 exactly, so every
    L_{t-1} (t >= 1) is 0 and only L_T and L_0 remain."""
    s = make_schedule("linear", 100, 1e-3, 0.2)
    x0 = (torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.float64) / 127.5 - 1)

    def oracle(x, t):
        return predict_eps(s, x0, x, t)
    out = vlb_terms(s, oracle, x0, generator=torch.Generator().manual_seed(0))
    assert out["terms"].shape == (2, 100)
    assert out["terms"][:, 1:].abs().max().item() < 1e-8
    abar = s.alphas_cumprod[-1]
    prior = 0.5 * (-1 - torch.log(1 - abar) + (1 - abar) + abar * x0 ** 2)      # nats per pixel
    assert torch.allclose(out["prior"], prior.flatten(1).mean(1) / math.log(2))
    assert torch.allclose(out["total"], out["prior"] + out["decoder"])
    assert (out["decoder"] > 0).all()


def test_a_wrong_model_pays_in_the_kl_terms():
    s = make_schedule("linear", 50, 1e-3, 0.3)
    x0 = torch.zeros(2, 1, 3, 3, dtype=torch.float64)
    out = vlb_terms(s, lambda x, t: torch.zeros_like(x), x0, timesteps=[1, 10, 40])
    assert out["terms"].shape == (2, 3) and (out["terms"] > 0).all() and "total" not in out
