"""lessons/training.py: the bound per timestep from the shipped model, and live toy training that really learns."""
import base64
import re

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from figures import array, load
from lessons import training


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/conftest.py


def test_vlb_plot_positive_terms_and_summary():
    fig, md = training.vlb_plot(n_images=2, stride=50)
    by_name = {tr.name.split(" ")[0]: tr for tr in fig.data}
    terms, decoder, prior = (np.asarray(by_name[k].y, float) for k in ("L_{t-1}", "L_0", "L_T"))
    assert len(terms) > 20 and (terms > 0).all() and np.isfinite(terms).all()
    assert 0 < decoder[0] < 8 and 0 < prior[0] < 1e-3                 # L_T ~ 0: alpha-bar_T ~ 4e-5
    assert terms[0] > 10 * terms[-1]                                  # the first steps hold most of the bound
    numbers = [float(v) for v in re.findall(r"\d+\.\d+(?:e-?\d+)?", md)]
    assert len(numbers) >= 4 and "estimate" in md
    assert training.vlb_plot(n_images=2, stride=50)[0] is fig          # cached: a second click is instant


def test_vlb_midpoint_weights_cover_every_timestep():
    ts = training.vlb_timesteps(1000, 15)
    assert ts[0] == 0 and ts[:15] == list(range(15)) and ts[-1] == 990
    assert training.cell_widths(ts, 1000).sum() == pytest.approx(999)  # t = 1..999, each counted once


def _nn_dist(points, data):
    return torch.cdist(torch.as_tensor(points), torch.as_tensor(data)).min(1).values.mean().item()


def test_train_toy_learns_two_moons():
    outs = list(training.train_toy("two-moons", steps=1000, yield_s=0.1))
    assert len(outs) >= 5
    assert all(o[2] == gr.skip() for o in outs[:-1])                  # the state is set once, at the end
    state = outs[-1][2]
    assert state["name"] == "two-moons" and set(state["ema"]) and state["traj"].shape == (101, 500, 2)
    loss = np.asarray(outs[-1][0].data[0].y, float)
    assert len(loss) == 1000 and loss[-50:].mean() < 0.7 * loss[:20].mean()
    data = training._real("two-moons")
    traj = state["traj"]
    assert _nn_dist(traj[-1], data) < 0.5 * _nn_dist(traj[0], data)   # noise x_T -> points on the moons
    final = load(outs[-1][1])["data"][1]                              # the scatter shows the end of the run
    assert np.allclose(final["x"], traj[-1][:, 0]) and np.allclose(final["y"], traj[-1][:, 1])
    # the flow slider scrubs the stored run in the page: all of it is sent, step 0 the noise, the last the samples
    update, data = training.flow_reset(state, "two-moons")
    sent = np.frombuffer(base64.b64decode(data["traj"]), "<f4").reshape(data["steps"] + 1, data["n"], 2)
    assert update["maximum"] == 100 and data["steps"] == 100 and np.array_equal(sent, traj.astype(np.float32))
    assert len(data["hue"]) == 500 and 0 <= min(data["hue"]) and max(data["hue"]) <= 360


def test_bad_arguments_give_clear_errors():
    with pytest.raises(gr.Error, match="toy"):
        next(training.train_toy("donut"))
    with pytest.raises(gr.Error, match="steps"):
        next(training.train_toy("two-moons", steps=-3))
    with pytest.raises(gr.Error):
        training.flow_data(None, "donut")
    with pytest.raises(gr.Error, match="stride"):
        training.vlb_plot(stride=0)


def test_flow_without_any_model_shows_only_data(monkeypatch):
    monkeypatch.setattr(training, "shipped_run", lambda name: None)
    data = training.flow_data(None, "rings")
    assert data["n"] == 0 and data["hue"] == [] and len(base64.b64decode(data["data"])) == 2000 * 2 * 4


def test_the_same_network_trains_on_either_objective():
    """The objective switch: flow matching trains the same ToyMLP on the velocity eps - x_0 and samples it with
    Euler steps; its run starts from the same noise as DDPM's and lands on the toy (energy distance a quarter of
    the noise's or less; measured after 1,500 steps: eps 0.0092, flow 0.0047, the noise 0.052, the floor 0.0015)."""
    from ddpm import energy_distance, make_toy
    out = {}
    for objective in ("eps", "flow"):
        *_, last = training.train_toy("two-moons", steps=1500, seed=0, yield_s=60, objective=objective)
        state = last[2]
        assert state["objective"] == objective and state["traj"].shape == (training.TOY_T + 1, training.N_POINTS, 2)
        out[objective] = state["traj"]
    assert np.array_equal(out["eps"][0], out["flow"][0])                  # the same x_T / x_1
    real = make_toy("two-moons", 2000, seed=1)
    for objective, traj in out.items():
        start = energy_distance(torch.from_numpy(traj[0]), real)
        end = energy_distance(torch.from_numpy(traj[-1]), real)
        assert end < 0.25 * start, (objective, start, end)
    with pytest.raises(gr.Error, match="objective"):
        next(training.train_toy("two-moons", steps=10, objective="score"))
