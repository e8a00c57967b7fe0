"""ddpm/samplers: DDPM and DDIM steps against each other, against an independent transcription of
the papers' formulas, and against a Gaussian toy problem whose exact answer is known."""
import math

import pytest
import torch

from ddpm import ddim_step, ddpm_step, make_schedule, q_sample, sample_loop
from ddpm.posterior import v_target
from ddpm.samplers import guided, timesteps_for


def _state(schedule, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(3, 1, 6, 6, generator=g, dtype=torch.float64) * 1.6 - 0.8
    eps = torch.randn(3, 1, 6, 6, generator=g, dtype=torch.float64)
    return x0, eps, q_sample(schedule, x0, t, eps)


@pytest.mark.parametrize("t", [1, 100, 600, 999])
def test_ddpm_step_matches_algorithm_2(linear, t):
    """Algorithm 2, line 4, written out directly: x_{t-1} = (x_t - beta/sqrt(1-abar) eps)/sqrt(alpha) + sigma z."""
    x0, eps, xt = _state(linear, t)
    z = torch.randn_like(xt)
    for variance, sigma2 in (("fixed_large", linear.betas[t]), ("fixed_small", linear.posterior_variance[t])):
        want = (xt - linear.betas[t] / linear.sqrt_one_minus_alphas_cumprod[t] * eps) / linear.alphas[t].sqrt() \
            + sigma2.sqrt() * z
        got, x0_pred = ddpm_step(linear, eps, t, xt, noise=z, variance=variance, clip=False)
        assert torch.allclose(got, want, atol=1e-10)
        assert torch.allclose(x0_pred, x0, atol=1e-8)


def test_no_noise_at_t0(linear):
    x0, eps, xt = _state(linear, 0)
    a, _ = ddpm_step(linear, eps, 0, xt, noise=torch.randn_like(xt), clip=False)
    b, _ = ddpm_step(linear, eps, 0, xt, noise=torch.zeros_like(xt), clip=False)
    assert torch.equal(a, b) and torch.allclose(a, x0, atol=1e-6)


@pytest.mark.parametrize("t,t_prev", [(999, 979), (500, 0), (20, -1)])
def test_ddim_matches_song_eq12(linear, t, t_prev):
    x0, eps, xt = _state(linear, t, seed=3)
    z = torch.randn_like(xt)
    for eta in (0.0, 0.5, 1.0):
        a_t = linear.alphas_cumprod[t]
        a_p = linear.alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
        sigma = eta * math.sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p))
        want = a_p.sqrt() * (xt - (1 - a_t).sqrt() * eps) / a_t.sqrt() + (1 - a_p - sigma ** 2).sqrt() * eps + sigma * z
        got, _ = ddim_step(linear, eps, t, t_prev, xt, eta=eta, noise=z, clip=False)
        assert torch.allclose(got, want, atol=1e-9)


def test_ddim_eta0_is_deterministic(linear):
    _, eps, xt = _state(linear, 700)
    a, _ = ddim_step(linear, eps, 700, 650, xt, eta=0.0, generator=torch.Generator().manual_seed(1))
    b, _ = ddim_step(linear, eps, 700, 650, xt, eta=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


@pytest.mark.parametrize("clip", [False, True])
def test_ddim_eta1_every_step_equals_ddpm_fixed_small(linear, clip):
    for t in (1, 50, 400, 999):
        _, eps, xt = _state(linear, t, seed=t)
        out = eps * 1.3                                               # any network output, even a poor one
        z = torch.randn_like(xt)
        a, a0 = ddim_step(linear, out, t, t - 1, xt, eta=1.0, noise=z, clip=clip)
        b, b0 = ddpm_step(linear, out, t, xt, noise=z, variance="fixed_small", clip=clip)
        assert torch.allclose(a, b, atol=1e-9) and torch.allclose(a0, b0)


@pytest.mark.parametrize("t", [5, 300, 900])
def test_three_predictions_give_the_same_step(linear, t):
    x0, eps, xt = _state(linear, t, seed=7)
    z = torch.randn_like(xt)
    outs = {"epsilon": eps, "x0": x0, "v": v_target(linear, x0, eps, t)}
    ddpm = [ddpm_step(linear, o, t, xt, noise=z, prediction=p)[0] for p, o in outs.items()]
    ddim = [ddim_step(linear, o, t, t - 5, xt, eta=0.3, noise=z, prediction=p)[0] for p, o in outs.items()]
    for a in ddpm[1:]:
        assert torch.allclose(ddpm[0], a, atol=1e-7)
    for a in ddim[1:]:
        assert torch.allclose(ddim[0], a, atol=1e-7)


def _gaussian_oracle(schedule, s2):
    """The exact eps-predictor for data N(0, s2 I): E[eps | x_t] = sqrt(1-abar) x_t / (abar s2 + 1 - abar)."""
    def fn(x, t):
        abar = schedule.alphas_cumprod[t].to(x.dtype).reshape(-1, *[1] * (x.dim() - 1))
        return (1 - abar).sqrt() * x / (abar * s2 + 1 - abar)
    return fn


@pytest.mark.parametrize("sampler,steps,eta,variance", [("ddpm", 1000, 0, "fixed_small"), ("ddpm", 1000, 0, "fixed_large"),
                                                        ("ddim", 250, 0.0, None), ("ddim", 1000, 1.0, None)])
def test_samplers_recover_a_known_distribution(sampler, steps, eta, variance):
    """With the exact score of N(0, 0.25), the reverse chain must produce samples of std 0.5."""
    s = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, 1, dtype=torch.float64, generator=g)
    ts = timesteps_for(sampler, steps, 1000)
    for f in sample_loop(_gaussian_oracle(s, 0.25), s, x, ts, sampler, eta=eta, variance=variance or "fixed_small",
                         clip=False, generator=g):
        x = f.x_t
    assert x.mean().item() == pytest.approx(0.0, abs=0.02)
    # fixed_large over-disperses slightly, as the paper's Sec. 3.2 bounds suggest
    assert x.std().item() == pytest.approx(0.5, rel=0.03 if variance != "fixed_large" else 0.06)


def test_ddim_few_steps_under_disperses_and_converges():
    """Fewer DDIM steps = a coarser discretisation of the same process: the error shrinks with steps."""
    s = make_schedule("linear", 1000)
    stds = []
    for steps in (20, 50, 250):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(20_000, 1, dtype=torch.float64, generator=g)
        for f in sample_loop(_gaussian_oracle(s, 0.25), s, x, timesteps_for("ddim", steps, 1000), "ddim", clip=False):
            x = f.x_t
        stds.append(x.std().item())
    assert stds[0] < stds[1] < stds[2] and abs(stds[2] - 0.5) < 0.01


def test_single_point_data_lands_on_the_point(linear):
    """If all data is one image x*, the ideal network makes DDIM (eta = 0) end exactly on x*."""
    target = torch.rand(1, 1, 5, 5, dtype=torch.float64) * 2 - 1

    def oracle(x, t):
        from ddpm import predict_eps
        return predict_eps(linear, target.expand_as(x), x, t)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    for f in sample_loop(oracle, linear, x, timesteps_for("ddim", 10, 1000), "ddim"):
        pass
    assert torch.allclose(f.x_t, target.expand_as(f.x_t), atol=1e-6)


def test_guidance_combines_one_batched_call():
    calls = []

    def model(x, t, labels=None):
        calls.append(x.shape[0])
        return torch.where((labels >= 0).reshape(-1, 1), 1.0, 0.0).expand_as(x).clone()
    fn = guided(model, torch.tensor([3, 4]), guidance_scale=2.5)
    out = fn(torch.zeros(2, 3), torch.tensor([5, 5]))
    assert calls == [4]                                           # cond + uncond in one batch of 2B
    assert torch.allclose(out, torch.full((2, 3), 2.5))           # 0 + 2.5 * (1 - 0)


def test_guidance_zero_and_one_are_single_passes():
    """s = 0 is the unconditional model and s = 1 the conditional one: one pass of B each, not 2B times 0."""
    calls = []

    def model(x, t, labels=None):
        calls.append((x.shape[0], None if labels is None else labels.tolist()))
        return torch.zeros_like(x) if labels is None else torch.ones_like(x)
    labels = torch.tensor([3, 4])
    for s, want_labels, value in ((0.0, None, 0.0), (1.0, [3, 4], 1.0)):
        for interval in (None, (100, 500)):
            calls.clear()
            out = guided(model, labels, guidance_scale=s, interval=interval)(torch.zeros(2, 3), torch.tensor([300, 300]))
            assert calls == [(2, want_labels)] and torch.equal(out, torch.full((2, 3), value))


def test_guidance_interval_guides_only_inside_it():
    calls = []

    def model(x, t, labels=None):
        calls.append(x.shape[0])
        if labels is None:
            return torch.zeros_like(x)
        return torch.where((labels >= 0).reshape(-1, 1), 1.0, 0.0).expand_as(x).clone()
    fn = guided(model, torch.tensor([3, 4]), guidance_scale=2.5, interval=(100, 500))
    for t, expected, batch in ((99, 1.0, 2), (100, 2.5, 4), (500, 2.5, 4), (501, 1.0, 2)):
        calls.clear()
        out = fn(torch.zeros(2, 3), torch.tensor([t, t]))
        assert calls == [batch]                                   # outside: one conditional pass of B
        assert torch.allclose(out, torch.full((2, 3), expected))
    out = fn(torch.zeros(2, 3), torch.tensor([50, 300]))          # mixed timesteps: per item
    assert torch.allclose(out, torch.tensor([[1.0] * 3, [2.5] * 3]))
    plain = guided(model, torch.tensor([3, 4]), guidance_scale=2.5)
    assert torch.equal(plain(torch.zeros(2, 3), torch.tensor([999, 999])), torch.full((2, 3), 2.5))
    # s <= 1 has no push to limit: s = 0 stays the unconditional model at every t
    uncond = guided(model, torch.tensor([3, 4]), guidance_scale=0.0, interval=(100, 500))
    assert torch.equal(uncond(torch.zeros(2, 3), torch.tensor([999, 999])), torch.zeros(2, 3))


def test_negative_prompt_replaces_the_unconditional_branch():
    """eps = eps_neg + s (eps_pos - eps_neg), as Stable Diffusion's negative prompt: a model that answers
    each label by its value makes the formula visible."""
    calls = []

    def model(x, t, labels=None):
        calls.append(None if labels is None else labels.tolist())
        lab = torch.full((x.shape[0],), -1.0) if labels is None else labels.float()
        return lab.reshape(-1, 1).expand_as(x).clone()                # eps = the label's value
    pos, neg = torch.tensor([3, 4]), torch.tensor([5, 5])
    out = guided(model, pos, guidance_scale=2.0, negative_labels=neg)(torch.zeros(2, 3), torch.tensor([7, 7]))
    assert calls == [[3, 4, 5, 5]]                                     # one batch of 2B: positive, then negative
    assert torch.equal(out, torch.tensor([[1.0] * 3, [3.0] * 3]))      # 5 + 2 (3 - 5), 5 + 2 (4 - 5)
    calls.clear()                                                      # no positive label: away from neg alone
    out = guided(model, None, guidance_scale=2.0, negative_labels=neg)(torch.zeros(2, 3), torch.tensor([7, 7]))
    assert calls == [[-1, -1, 5, 5]] and torch.equal(out, torch.full((2, 3), -7.0))   # 5 + 2 (-1 - 5)
    calls.clear()                                                      # s = 0: the negative branch alone
    out = guided(model, pos, guidance_scale=0.0, negative_labels=neg)(torch.zeros(2, 3), torch.tensor([7, 7]))
    assert calls == [[5, 5]] and torch.equal(out, torch.full((2, 3), 5.0))


def test_timesteps_for():
    assert timesteps_for("ddpm", 50, 1000) == list(range(999, -1, -1))
    assert len(timesteps_for("ddim", 50, 1000)) == 50
    ts = timesteps_for("ddim", 50, 1000, start_t=599)
    assert ts[0] == 599 and ts[-1] == 0 and len(ts) == 30
    assert timesteps_for("ddpm", 50, 1000, start_t=9) == list(range(9, -1, -1))
    with pytest.raises(ValueError, match="unknown sampler"):
        timesteps_for("euler", 50, 1000)
