"""ddpm/score.py: the score of an ε-network, s = −ε/√(1−ᾱ_t) (Vincent 2011; Song & Ermon 2019), its field on a
grid, and Tweedie's formula, which must give back Ho et al.'s x̂_0 (ddpm.predict_x0)."""
import base64

import numpy as np
import pytest
import torch

from ddpm import load_pretrained, make_schedule, make_toy, predict_x0
from ddpm.score import score, score_field, tweedie_x0


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/conftest.py


@pytest.fixture(scope="module")
def moons():
    return load_pretrained("two-moons", device="cpu")


def test_score_is_minus_eps_over_sigma(moons):
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))           # (64, 2)
    t = torch.randint(0, moons.timesteps, (64,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eps = moons.model(x, t, labels=None)                                     # (64, 2) ε_θ(x, t)
    sigma = moons.schedule.sqrt_one_minus_alphas_cumprod[t].float()[:, None]     # (64, 1) √(1−ᾱ_t)
    s = score(moons.model, moons.schedule, x, t)
    assert s.shape == (64, 2)
    torch.testing.assert_close(s, -eps / sigma)
    torch.testing.assert_close(score(moons.model, moons.schedule, x, 7)[:1],     # an int t is every row's t
                               score(moons.model, moons.schedule, x[:1], torch.tensor([7])))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_tweedie_is_predict_x0(kind):
    """E[x_0 | x_t] = (x_t + (1−ᾱ_t) s)/√ᾱ_t with s = −ε/√(1−ᾱ_t) is Ho et al.'s Eq. 15 for the same ε."""
    sch = make_schedule(kind, 1000)
    g = torch.Generator().manual_seed(2)
    x_t, eps = torch.randn(16, 1, 8, 8, generator=g), torch.randn(16, 1, 8, 8, generator=g)
    t = torch.randint(0, 1000, (16,), generator=g)
    s = -eps / sch.sqrt_one_minus_alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
    torch.testing.assert_close(tweedie_x0(sch, x_t, s, t), predict_x0(sch, eps, x_t, t), rtol=1e-4, atol=1e-4)


def test_score_field_layout(moons):
    f = score_field(moons.model, moons.schedule, [0, 50, 99], 3.0, 5)
    grid, s = f["grid"], f["scores"]
    assert grid.shape == (25, 2) and s.shape == (3, 25, 2) and f["ts"] == [0, 50, 99]
    assert grid[0].tolist() == [-3, -3] and grid[1].tolist() == [-1.5, -3] and grid[-1].tolist() == [3, 3]  # y slow
    torch.testing.assert_close(s[1], score(moons.model, moons.schedule, grid, 50))


def test_near_the_data_the_score_points_at_it(moons):
    """At small t the learned field of the shipped two-moons model points from a grid point towards the nearest
    data point, for most grid points within distance 1 of the data."""
    data = make_toy("two-moons", 2000, seed=1)                                   # (2000, 2)
    f = score_field(moons.model, moons.schedule, [1, 2], 3.0, 21)
    dist, idx = torch.cdist(f["grid"], data).min(1)                              # (441,)
    near = dist < 1
    assert near.sum() > 100
    to_data = data[idx] - f["grid"]                                              # (441, 2)
    for s in f["scores"]:
        cos = torch.nn.functional.cosine_similarity(s[near], to_data[near], dim=1)
        assert (cos > 0).float().mean() > 0.8


def test_far_from_the_data_at_large_t_the_score_is_minus_x(moons):
    """At t = T−1, q_t ≈ N(0, I), whose score is −x."""
    f = score_field(moons.model, moons.schedule, [moons.timesteps - 1], 3.0, 9)
    cos = torch.nn.functional.cosine_similarity(f["scores"][0], -f["grid"], dim=1)
    assert (cos[f["grid"].norm(dim=1) > 1] > 0.95).all()


def test_the_page_gets_the_same_numbers(moons):
    """The payload the Training tab sends (lessons.paths.score_data) decodes to score() at every t."""
    from lessons import paths
    d = paths.score_data("two-moons", 3)
    T, G = d["T"], d["n_grid"] ** 2
    field = np.frombuffer(base64.b64decode(d["field"]), "<f4").reshape(T, G, 2)
    grid = torch.from_numpy(np.frombuffer(base64.b64decode(d["grid"]), "<f4").reshape(G, 2).copy())
    assert T == moons.timesteps == 100 and G == 441 and d["t"] == 3
    for t in (0, 3, 42, 99):
        np.testing.assert_allclose(field[t], score(moons.model, moons.schedule, grid, t).numpy(), rtol=1e-4,
                                   atol=1e-4)
