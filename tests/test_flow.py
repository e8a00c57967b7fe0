"""ddpm/flow.py, ddpm/distances.py, ddpm/toy_metrics.py: flow matching against its closed forms, the shipped flow toys on their
shapes, and the distances against independent computations."""
import dataclasses
import math

import numpy as np
import pytest
import scipy.stats
import torch

from ddpm import FlowMatching, FlowPipeline, ToyMLP, Trainer, load_pretrained, make_toy
from ddpm.flow import euler_times, flow_sample_loop, load_flow
from ddpm.toy import toy_dataset
from ddpm.distances import energy_distance, floor, sliced_wasserstein
from ddpm.toy_metrics import ClipX0, data_box

TOYS = ["swiss-roll", "two-moons", "8-gaussians", "checkerboard", "rings"]


@pytest.fixture(scope="module")
def moons():
    return load_pretrained("two-moons-flow", device="cpu")


# ---- the shipped models ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TOYS)
def test_shipped_flow_toys_land_on_their_shapes(name):
    """50 Euler steps: the energy distance to fresh real points is within a few floors of real-vs-real (measured,
    seed 0: two-moons 0.0024 against a floor of 0.0009; checkerboard, the softest, 0.0054 against 0.0015) and a
    small fraction of the starting noise's; half the points within 0.06 of a real one, as for the DDPM toys."""
    pipe = load_pretrained(f"{name}-flow", device="cpu")
    assert isinstance(pipe, FlowPipeline) and pipe.classes is None
    pts = pipe.sample(n=2000, steps=50, seed=0)
    assert pts.shape == (2000, 2) and torch.isfinite(pts).all()
    ref = make_toy(name, 2000, seed=1)
    real = energy_distance(make_toy(name, 2000, seed=2), ref)                 # the floor, 0.0008-0.0019
    noise = energy_distance(pipe.initial_noise(2000, 0), ref)                 # where the run starts: 0.05-0.21
    ed = energy_distance(pts, ref)
    assert ed < 4 * real + 0.002 and ed < noise / 8, (ed, real, noise)
    near = torch.cdist(pts[:1000], make_toy(name, 20000, seed=1)).min(1).values
    assert near.median() < 0.06, near.median()


def test_one_step_is_the_straight_line(moons):
    """One Euler step from eps at t = 1 lands on x_0 = eps - v_theta(eps, 1); x0_pred is the same point."""
    eps = moons.initial_noise(8, seed=3)
    frames = list(moons.progressive(n=8, steps=1, seed=3))
    assert len(frames) == 1 and frames[0].t == 1.0
    with torch.no_grad():
        v = moons.model(eps, torch.full((8,), 1.0) * moons.time_scale)      # t = 1 enters the MLP as 1000
    assert torch.equal(frames[0].x_t, eps - v) and torch.equal(frames[0].x0_pred, eps - v)
    assert torch.equal(moons.sample(n=8, steps=1, seed=3), eps - v)


def test_progressive_frames_are_euler_steps(moons):
    """Every frame: x_{t - 1/S} = x_t - (1/S) v(x_t, t) and x0_pred = x_t - t v(x_t, t), recomputed by hand."""
    S = 4
    frames = list(moons.progressive(n=5, steps=S, seed=1))
    assert [f.t for f in frames] == [1.0, 0.75, 0.5, 0.25]
    x = moons.initial_noise(5, seed=1)
    for f in frames:
        with torch.no_grad():
            v = moons.model(x, torch.full((5,), f.t * 1000.0))
        assert torch.allclose(f.x0_pred, x - f.t * v, atol=1e-6)
        x = x - v / S
        assert torch.allclose(f.x_t, x, atol=1e-6)
    assert torch.equal(frames[-1].x_t, frames[-1].x0_pred)      # the last step goes to t = 0: the same point
    assert torch.equal(frames[-1].x_t, moons.sample(n=5, steps=S, seed=1))


def test_euler_with_the_exact_velocity_of_a_gaussian():
    """Data N(mu, s^2): the marginal path is x_t = (1-t) mu + sigma_t eps with sigma_t = sqrt((1-t)^2 s^2 + t^2),
    so the exact velocity is v(x, t) = -mu + sigma_t' (x - (1-t) mu) / sigma_t. Euler on it must carry eps to
    mu + s eps, with the error of a first-order method: ten times the steps, a tenth of the error."""
    mu, s = torch.tensor([1.5, -0.5]), 0.3

    def v(x, t):
        t = t[:, None].double()
        sig = ((1 - t) ** 2 * s ** 2 + t ** 2).sqrt()
        dsig = (t - (1 - t) * s ** 2) / sig                                     # d sigma_t / dt
        return (-mu + dsig * (x - (1 - t) * mu) / sig).float()

    eps = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    errors = []
    for steps in (10, 100, 1000):
        *_, last = flow_sample_loop(v, eps, steps)
        errors.append((last.x_t - (mu + s * eps)).abs().max().item())
    assert errors[2] < 3e-3, errors                                       # measured 0.218, 0.0235, 0.00237
    assert 8 < errors[0] / errors[1] < 12 and 8 < errors[1] / errors[2] < 12, errors


def test_time_grid():
    assert euler_times(1) == [1.0, 0.0] and euler_times(4) == [1.0, 0.75, 0.5, 0.25, 0.0]
    for bad in (0, 1001, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            euler_times(bad)


def test_determinism_by_seed(moons):
    state = torch.get_rng_state()
    a, b, c = (moons.sample(n=64, steps=5, seed=s) for s in (7, 7, 8))
    assert torch.equal(torch.get_rng_state(), state)                     # no global random state touched
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the same noise as the DDPM toy for the same seed: the sweep compares samplers from the same start
    assert torch.equal(moons.initial_noise(64, 7), load_pretrained("two-moons", device="cpu").initial_noise(64, 7))


@pytest.mark.parametrize("kwargs,match", [(dict(n=0), "n must be"), (dict(steps=0), "steps must be"),
                                          (dict(steps=1001), "steps must be"), (dict(sampler="ddim"), "sampler")])
def test_bad_arguments(moons, kwargs, match):
    with pytest.raises(ValueError, match=match):
        moons.sample(**{"n": 1, "steps": 2, **kwargs})


# ---- training: the loss and the Trainer ---------------------------------------------------------------------
def test_loss_is_the_velocity_regression_by_hand():
    """FlowMatching's loss = mean ||(eps - x_0) - v_theta((1 - t) x_0 + t eps, 1000 t)||^2, from the same draws
    (t ~ U[0, 1) first, then eps, as GaussianDiffusion draws t then eps)."""
    torch.manual_seed(0)
    net = ToyMLP(hidden=32)
    fm = FlowMatching(net)
    x0 = make_toy("two-moons", 64, seed=0)
    loss = fm(x0, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    t = torch.rand(64, generator=g)
    eps = torch.randn(64, 2, generator=g)
    x_t = (1 - t[:, None]) * x0 + t[:, None] * eps
    by_hand = ((eps - x0) - net(x_t, t * 1000)).pow(2).mean()                 # over points and both dims
    assert torch.allclose(loss, by_hand, rtol=1e-6), (loss, by_hand)


def test_trainer_trains_and_resumes_a_flow_model_exactly(tmp_path):
    """The project's Trainer runs FlowMatching unchanged: checkpoints load back as a flow, and a run stopped at
    step 10 and resumed ends bit-identical to one that never stopped."""
    def trainer(folder, steps):
        torch.manual_seed(0)
        return Trainer(FlowMatching(ToyMLP(hidden=32), sampling_steps=4), toy_dataset("two-moons", 512),
                       train_batch_size=64, train_lr=3e-3, train_num_steps=steps, warmup_steps=2,
                       save_and_sample_every=10, results_folder=str(folder), progress=False, device="cpu")
    straight = trainer(tmp_path / "a", 20)
    straight.train()
    first = trainer(tmp_path / "b", 10)
    first.train()
    resumed = trainer(tmp_path / "b", 20)
    assert resumed.load() and resumed.step == 10
    resumed.train()
    for p, q in zip(straight.ema.parameters(), resumed.ema.parameters()):
        assert torch.equal(p, q)
    assert straight.loss_history == resumed.loss_history
    flow = load_flow(tmp_path / "a" / "model-0000020")
    assert isinstance(flow, FlowMatching) and flow.time_scale == 1000.0
    for p, q in zip(flow.model.parameters(), straight.ema.parameters()):
        assert torch.equal(p, q)
    pipe = load_pretrained(str(tmp_path / "a" / "model-0000020"), device="cpu")   # a checkpoint path works too
    assert isinstance(pipe, FlowPipeline) and pipe.sample(n=3, steps=2).shape == (3, 2)


# ---- distances ------------------------------------------------------------------------------------------------
def test_energy_distance_against_brute_force_and_scipy():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 2, generator=g), torch.randn(40, 2, generator=g) * 1.5 + 0.3
    d = lambda a, b: math.dist(a.tolist(), b.tolist())                             # noqa: E731
    brute = (2 * sum(d(a, b) for a in x for b in y) / (30 * 40) - sum(d(a, b) for a in x for b in x) / 30 ** 2
             - sum(d(a, b) for a in y for b in y) / 40 ** 2)
    assert energy_distance(x, y) == pytest.approx(brute, rel=1e-12)
    assert energy_distance(x, y) == pytest.approx(energy_distance(y, x), rel=1e-12) and energy_distance(x, y) > 0
    # scipy.stats.energy_distance (1-D) is the square root of the same V-statistic
    u, v = x[:, :1], y[:, :1]
    as_2d = lambda a: torch.cat([a, torch.zeros_like(a)], 1)                       # noqa: E731
    ref = scipy.stats.energy_distance(u[:, 0].numpy(), v[:, 0].numpy()) ** 2
    assert energy_distance(u, v) == pytest.approx(ref, rel=1e-10)
    assert energy_distance(as_2d(u), as_2d(v)) == pytest.approx(ref, rel=1e-10)
    # identical sets: 0 (exact distances, no rounding left where a point meets itself)
    big = make_toy("rings", 2000, seed=1)
    assert abs(energy_distance(big, big.clone())) < 1e-12
    f, sd = floor("two-moons")
    assert 0 < f < 0.003 and sd < f


def test_sliced_wasserstein_against_scipy():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(50, 2, generator=g), torch.rand(50, 2, generator=g)
    theta = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theta = (theta / theta.norm(dim=1, keepdim=True)).numpy()
    ref = np.mean([scipy.stats.wasserstein_distance(x.double().numpy() @ th, y.double().numpy() @ th) for th in theta])
    assert sliced_wasserstein(x, y, projections=8, seed=0) == pytest.approx(ref, rel=1e-10)
    assert sliced_wasserstein(x, x) == 0.0
    with pytest.raises(ValueError, match="equal-sized"):
        sliced_wasserstein(x, y[:10])


# ---- the DDPM side of the sweep -------------------------------------------------------------------------------
def test_ddim_eta_one_on_every_step_is_ddpm():
    """The sweep's "ddpm" at S steps is DDIM with eta = 1 (Song et al. Eq. 16); on all T steps it is Algorithm 2."""
    pipe = load_pretrained("two-moons", device="cpu")
    a = pipe.sample(n=200, sampler="ddpm", seed=0)
    b = pipe.sample(n=200, sampler="ddim", eta=1.0, steps=pipe.timesteps, seed=0)
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_clip_x0_keeps_every_estimate_in_the_box():
    pipe = load_pretrained("two-moons", device="cpu")
    lo, hi = data_box("two-moons")
    clipped = dataclasses.replace(pipe, model=ClipX0(pipe.model, pipe.schedule, lo, hi))
    plain = list(pipe.progressive(n=500, sampler="ddim", steps=10, seed=0))
    frames = list(clipped.progressive(n=500, sampler="ddim", steps=10, seed=0))
    assert plain[0].x0_pred.abs().max() > 20                              # x0 = (x - sqrt(1 - abar) eps) / sqrt(abar)
    for f in frames:
        assert (f.x0_pred >= lo - 1e-3).all() and (f.x0_pred <= hi + 1e-3).all()
    # a box that holds every estimate changes nothing
    wide = dataclasses.replace(pipe, model=ClipX0(pipe.model, pipe.schedule, torch.full((2,), -1e4),
                                                  torch.full((2,), 1e4)))
    assert torch.allclose(wide.sample(n=500, sampler="ddim", steps=10, seed=0), plain[-1].x_t, atol=1e-3)


def test_cli_trains_and_samples_a_flow_toy(tmp_path, capsys):
    """`train --objective flow` writes a flow checkpoint that `sample` reads; images are refused with a message."""
    from ddpm.cli import main
    main(["train", "--data", "toy:two-moons", "--objective", "flow", "--channels", "16", "--train-num-steps", "5",
          "--warmup-steps", "1", "--save-and-sample-every", "5", "--results-folder", str(tmp_path), "--no-progress",
          "--device", "cpu"])
    assert isinstance(load_pretrained(str(tmp_path / "model-0000005"), device="cpu"), FlowPipeline)
    main(["sample", "--model", "two-moons-flow", "--n", "50", "--steps", "5", "--out", str(tmp_path / "m.png"),
          "--device", "cpu"])
    assert (tmp_path / "m.png").stat().st_size > 1000
    with pytest.raises(SystemExit, match="toy"):
        main(["train", "--data", "fashion-mnist", "--objective", "flow", "--results-folder", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="flow-matching model"):
        main(["sample", "--model", "two-moons", "--sampler", "euler", "--out", str(tmp_path / "y.png")])
