"""lessons/runs.py: one computation per distinct request, followers, the LRU in bytes, the lanes; and /sample on it
(lessons/reverse.py) with a tiny untrained stand-in pipeline, so that everything here takes seconds."""
import threading
import time

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from lessons import reverse, runs


def counted(items, delay=0.0, gate=None, after=None, log=None):
    """A fake computation: yields (item, keep, nbytes) for each of `items`, sleeping `delay` after each;
    with `gate`, waits for it after `after` items. `log` counts calls and records whether it ran to the end."""
    log = {} if log is None else log

    def compute():
        log["calls"] = log.get("calls", 0) + 1
        log["closed_early"] = False
        done = 0
        try:
            for k, item in enumerate(items):
                if gate is not None and k == after:
                    gate.wait(10)
                yield item, True, 4
                done += 1
                time.sleep(delay)
        finally:
            log["closed_early"] = done < len(items)
    return compute, log


def drain(follower):
    return [x for x in follower if x is not runs.WAITING]


def concurrently(fns):
    out = [None] * len(fns)

    def run(i):
        out[i] = fns[i]()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


# ---- sharing -------------------------------------------------------------------------------------------------
def test_identical_requests_share_one_computation_and_get_identical_streams():
    reg = runs.Runs()
    items = [object() for _ in range(20)]
    compute, log = counted(items, delay=0.005)
    streams = concurrently([lambda: drain(reg.follow("k", compute)) for _ in range(12)])
    assert log["calls"] == 1 and reg.computations == 1
    for s in streams:
        assert len(s) == 20 and all(a is b for a, b in zip(s, items))          # the same objects, in order
    later = drain(reg.follow("k", compute))                                     # a later one replays it
    assert all(a is b for a, b in zip(later, items)) and len(later) == 20
    assert log["calls"] == 1 and reg.cached() == ["k"] and reg.in_flight() == 0


def test_different_requests_never_share_and_streams_never_mix():
    reg = runs.Runs()
    keys = [f"k{i}" for i in range(4)]
    computes = {k: counted([(k, j) for j in range(15)], delay=0.002) for k in keys}
    order = [keys[i % 4] for i in range(24)]                   # 6 followers per key, started all at once
    streams = concurrently([lambda k=k: drain(reg.follow(k, computes[k][0])) for k in order])
    for k, s in zip(order, streams):
        assert s == [(k, j) for j in range(15)]                # its own items only, all of them, in order
    assert all(computes[k][1]["calls"] == 1 for k in keys) and reg.computations == 4


def test_a_follower_joining_mid_run_gets_every_frame_from_the_start():
    reg = runs.Runs()
    gate = threading.Event()
    items = list(range(10))
    compute, log = counted(items, gate=gate, after=4)
    first = reg.follow("k", compute, first=lambda: ("x_T", 4))
    got_first = [next(first) for _ in range(5)]                # x_T and items 0..3; the run waits at the gate
    late = reg.follow("k", compute)
    assert [next(late) for _ in range(5)] == ["x_T", 0, 1, 2, 3] and late.behind == 0
    gate.set()
    assert got_first + drain(first) == ["x_T"] + items
    assert drain(late) == items[4:]
    assert log["calls"] == 1


def test_first_item_is_there_before_the_run_gets_a_lane():
    lanes = {"short": runs.Lane("short", 1)}
    reg = runs.Runs(lanes=lanes, wait=0.05)
    gate = threading.Event()
    blocker, _ = counted([1], gate=gate, after=0)
    reg.follow("busy", blocker)                                # holds the only slot
    f = reg.follow("k", counted([1, 2])[0], first=lambda: ("x_T", 4))
    t0 = time.perf_counter()
    assert next(f) == "x_T" and time.perf_counter() - t0 < 0.2
    assert next(f) is runs.WAITING and not f.run.started and lanes["short"].waiting == 1
    gate.set()
    assert drain(f) == [1, 2]


# ---- leaving, errors -----------------------------------------------------------------------------------------
def test_a_follower_that_leaves_does_not_stop_the_others_but_when_all_leave_the_run_stops():
    reg = runs.Runs(wait=0.05)
    items = list(range(30))
    compute, log = counted(items, delay=0.01)
    a, b = reg.follow("k", compute), reg.follow("k", compute)
    next(a)
    a.close()                                                  # Stop
    assert drain(b) == items and log["closed_early"] is False and reg.cached() == ["k"]
    compute2, log2 = counted(items, delay=0.01)
    c = reg.follow("k2", compute2)
    next(c)
    c.close()                                                  # the only follower leaves
    deadline = time.time() + 5
    while reg.in_flight() and time.time() < deadline:
        time.sleep(0.01)
    assert log2["closed_early"] is True and "k2" not in reg.cached()  # stopped, not cached
    d = reg.follow("k2", compute2)                             # the next request starts afresh
    assert drain(d) == items and log2["calls"] == 2


def test_a_run_whose_learners_all_left_while_it_waited_for_a_lane_never_computes():
    lanes = {"short": runs.Lane("short", 1)}
    reg = runs.Runs(lanes=lanes, wait=0.05)
    gate = threading.Event()
    blocker, _ = counted([1], gate=gate, after=0)
    busy = reg.follow("busy", blocker)
    compute, log = counted([1, 2])
    f = reg.follow("k", compute, first=lambda: ("x_T", 4))
    assert next(f) == "x_T"
    f.close()                                                  # Stop while waiting
    time.sleep(0.4)                                            # the waiting run notices (it polls every 0.25 s)
    gate.set()
    deadline = time.time() + 5
    while reg.in_flight() and time.time() < deadline:
        time.sleep(0.01)
    assert "calls" not in log and reg.in_flight() == 0 and reg.cached() == ["busy"]
    assert len(reg.crowd) == 1                                 # the learner of "busy"; f left
    busy.close()
    assert len(reg.crowd) == 0


def test_an_error_reaches_every_follower_and_is_not_cached():
    reg = runs.Runs()
    calls, gate = [], threading.Event()

    def compute():
        calls.append(1)
        yield "a", True, 1
        gate.wait(10)
        raise ValueError("bad labels")
    fs = [reg.follow("k", compute) for _ in range(3)]          # all three follow the one run
    gate.set()
    for f in fs:
        with pytest.raises(ValueError, match="bad labels"):
            drain(f)
    assert reg.cached() == [] and reg.in_flight() == 0
    with pytest.raises(ValueError):
        drain(reg.follow("k", compute))
    assert len(calls) == 2


# ---- memory --------------------------------------------------------------------------------------------------
def test_the_cache_is_bounded_by_its_byte_limit_least_recently_used_out_first():
    reg = runs.Runs(limit_bytes=100)
    for k in "abcd":                                           # 10 items x 4 bytes = 40 bytes each
        drain(reg.follow(k, counted(list(range(10)))[0]))
        assert reg.nbytes <= 100
    assert reg.cached() == ["c", "d"] and reg.nbytes == 80
    drain(reg.follow("c", counted([])[0]))                      # a replay makes "c" the most recent
    drain(reg.follow("e", counted(list(range(10)))[0]))
    assert reg.cached() == ["c", "e"]
    drain(reg.follow("huge", counted(list(range(30)))[0]))     # 120 bytes: larger than the whole cache
    assert reg.cached() == ["c", "e"] and reg.nbytes == 80


def test_a_ddim50_run_keeps_1_28_mb():
    """The number behind reverse.RUNS_BYTES: 51 stored frames (x_T + 50 steps) of x_t and x0, uint8, 16 images."""
    from ddpm.samplers import Frame
    frames = [Frame(t, torch.rand(16, 1, 28, 28), torch.rand(16, 1, 28, 28)) for t in range(50)]
    first = reverse._start(torch.rand(16, 1, 28, 28))
    total = first.nbytes + sum(nb for _, _, nb in reverse._steps(iter(frames), 50))
    assert total == 51 * 2 * 16 * 28 * 28 == 1_279_488
    assert reverse.RUNS_BYTES // total >= 50


# ---- lanes ---------------------------------------------------------------------------------------------------
def _lanes(long_lane: bool):
    short = runs.Lane("short", 1)
    return {"short": short, "long": runs.Lane("long", 1, yield_to=[short]) if long_lane else short}


@pytest.mark.parametrize("long_lane", [True, False])
def test_a_long_run_does_not_starve_a_short_one(long_lane):
    """A long run (100 x 10 ms) starts first, then a short one (5 x 10 ms). With its own lane the short one is
    done in a fraction of the long one's time; in one shared lane (the old way) it waits for the whole long run."""
    reg = runs.Runs(lanes=_lanes(long_lane), wait=0.05)
    long_f = reg.follow("long", counted(list(range(100)), delay=0.01)[0], lane="long")
    next(long_f)                                               # the long run is computing
    t0 = time.perf_counter()
    short = drain(reg.follow("short", counted(list(range(5)), delay=0.01)[0], lane="short"))
    waited = time.perf_counter() - t0
    assert short == list(range(5))
    if long_lane:
        assert waited < 0.4 and long_f.run.done is False       # short done while the long one still runs
    else:
        assert waited > 0.8                                    # the whole long run came first
    assert drain(long_f) == list(range(1, 100))


def test_a_lane_serves_first_come_first_served():
    lane = runs.Lane("short", 1)
    assert lane.acquire()
    order = []

    def take(k):
        assert lane.acquire(0.01)                              # polling often keeps its place in the queue
        order.append(k)
        time.sleep(0.01)
        lane.release()
    threads = []
    for k in range(6):
        threads.append(threading.Thread(target=take, args=(k,)))
        threads[-1].start()
        time.sleep(0.03)                                       # they arrive in this order
    assert lane.waiting == 6
    lane.release()
    for t in threads:
        t.join(5)
    assert order == list(range(6)) and lane.busy == 0 and lane.waiting == 0


def test_the_long_lane_steps_aside_while_a_short_run_computes():
    short = runs.Lane("short", 1)
    long = runs.Lane("long", 1, yield_to=[short], share=0.25)
    t0 = time.perf_counter()
    long.pause(0.02)
    assert time.perf_counter() - t0 < 0.01                     # nothing short computing: no pause
    assert short.acquire()
    t0 = time.perf_counter()
    long.pause(0.02)
    assert 0.055 < time.perf_counter() - t0 < 0.5              # rests 3x its step: a quarter of the time
    short.release()


# ---- /sample on the registry ---------------------------------------------------------------------------------
@pytest.fixture
def tiny(monkeypatch):
    """reverse.pipe -> a small untrained stand-in (T = 30), and a fresh registry."""
    from ddpm import UNet, make_schedule
    from ddpm.pretrained import Pipeline
    torch.manual_seed(0)
    classes = reverse.pipe().classes
    small = Pipeline(name="tiny", model=UNet(channels=8, channel_mult=(1, 2), attention_levels=(), num_classes=10).eval(),
                     schedule=make_schedule("linear", 30, 1e-3, 0.3), prediction="epsilon", data_shape=(1, 28, 28),
                     classes=classes, device=torch.device("cpu"))
    monkeypatch.setattr(reverse, "pipe", lambda model=None: small)
    monkeypatch.setattr(reverse, "RUNS", runs.Runs(reverse.RUNS_BYTES))
    calls = []
    steps = reverse._steps

    def counting(frames, total):                  # called once per computation
        calls.append(total)
        return steps(frames, total)
    monkeypatch.setattr(reverse, "_steps", counting)
    return small, calls


def test_sample_languages_differ_per_learner_but_the_frames_are_shared(tiny):
    small, calls = tiny
    en, zh = concurrently([lambda: list(reverse.sample("Bag", "ddim", 10, 0.0, 3.0, 4, 3, None, "m", "en")),
                           lambda: list(reverse.sample("Bag", "ddim", 10, 0.0, 3.0, 4, 3, None, "m", "zh"))])
    assert len(calls) == 1 and reverse.RUNS.computations == 1
    assert "step 10/10" in en[-1][2] and "第 10/10 步" in zh[-1][2]
    assert np.array_equal(en[-1][0], zh[-1][0]) and np.array_equal(en[-1][1], zh[-1][1])
    assert len(en[-1][3]) == 11 and all(a is b for fa, fb in zip(en[-1][3], zh[-1][3]) for a, b in zip(fa, fb))
    want = small.sample(n=3, steps=10, guidance_scale=3.0, labels=["Bag"], seed=4)
    assert np.array_equal(en[-1][0], reverse.grid_picture(want))            # what the library gives
    again = list(reverse.sample("Bag", "ddim", 10, 0.0, 3.0, 4, 3, None, "m", "en"))   # a replay
    assert len(calls) == 1 and np.array_equal(again[-1][0], en[-1][0]) and len(again[-1][3]) == 11
    assert len(again) <= reverse.REPLAY_FRAMES + 3
    other = list(reverse.sample("Bag", "ddim", 10, 0.0, 3.0, 5, 3, None, "m", "en"))   # another seed
    assert len(calls) == 2 and not np.array_equal(other[-1][0], en[-1][0])


def test_the_event_sends_the_same_pictures_as_png_files_encoded_once(tiny):
    ups = list(reverse.sample("Coat", "ddim", 6, 0.0, 2.0, 1, 2))
    evs = concurrently([lambda: list(reverse.sample_event("Coat", "ddim", 6, 0.0, 2.0, 1, 2)) for _ in range(3)])
    for ev in evs:
        assert ev[-1][0] == evs[0][-1][0] and isinstance(ev[-1][0], str)            # one file for everyone
        for k in (0, 1):
            assert np.array_equal(np.asarray(Image.open(ev[-1][k]).convert("RGB")), ups[-1][k])
    assert reverse.RUNS.computations == 1 and ev[-1][2] == ups[-1][2]


def test_bad_values_get_their_error_before_anything_is_shared(tiny):
    with pytest.raises(gr.Error, match="unknown class"):
        list(reverse.sample_event("Hat", "ddim", 5, 0, 3, 0, 2))
    with pytest.raises(gr.Error, match="n"):
        list(reverse.sample("any", "ddim", 5, 0, 3, 0, 99))
    assert reverse.RUNS.computations == 0 and reverse.RUNS.in_flight() == 0


def test_the_run_key_is_what_determines_the_images():
    p = reverse.pipe()
    a = reverse.check("Bag", "ddim", 50, 0.0, 3.0, 0, 16)
    assert reverse.run_key(p, a) == reverse.run_key(p, reverse.check("Bag", "ddim", 50, 0, 3, 0, 16))
    for other in (("Coat", "ddim", 50, 0.0, 3.0, 0, 16), ("Bag", "ddim", 49, 0.0, 3.0, 0, 16),
                  ("Bag", "ddim", 50, 0.5, 3.0, 0, 16), ("Bag", "ddim", 50, 0.0, 2.5, 0, 16),
                  ("Bag", "ddim", 50, 0.0, 3.0, 1, 16), ("Bag", "ddim", 50, 0.0, 3.0, 0, 15),
                  ("Bag", "ddpm", 50, 0.0, 3.0, 0, 16), ("Bag", "ddim", 50, 0.0, 3.0, 0, 16, 999)):
        assert reverse.run_key(p, reverse.check(*other)) != reverse.run_key(p, a)
    big = reverse.pipe("fashion-mnist-large")
    assert reverse.run_key(big, reverse.check("Bag", "ddim", 50, 0.0, 3.0, 0, 16, model="fashion-mnist-large")) \
        != reverse.run_key(p, a)
    # DDPM visits every t whatever the steps slider says
    assert reverse.run_key(p, reverse.check("Bag", "ddpm", 5, 0, 3, 0, 16)) == \
        reverse.run_key(p, reverse.check("Bag", "ddpm", 700, 0, 3, 0, 16))


def test_ddpm_1000_goes_to_the_long_lane_and_the_default_run_to_the_short_one():
    from ddpm.samplers import timesteps_for
    p = reverse.pipe()

    def lane(*args):
        a = reverse.check(*args)
        return reverse.lane_for(p, a, timesteps_for(a["sampler"], a["steps"], p.timesteps))
    assert lane("Bag", "ddpm", 50, 0.0, 3.0, 0, 16) == "long"
    assert lane("Bag", "ddim", 50, 0.0, 3.0, 0, 16) == "short"
    assert lane("Bag", "ddim", 50, 0.0, 3.0, 0, 16, 999) == "short"          # classic guidance: ~5 s
    assert lane("any", "ddpm", 50, 0.0, 3.0, 0, 1) == "short"                 # one image: ~3 s


def test_on_zerogpu_each_call_computes_in_its_own_thread(tiny, monkeypatch):
    """With the `spaces` package the GPU is lent to the call itself: no sharing, no lane, same stream."""
    shared = list(reverse.sample("Bag", "ddim", 5, 0.0, 3.0, 2, 2))
    monkeypatch.setattr(reverse, "spaces", object())
    alone = list(reverse.sample("Bag", "ddim", 5, 0.0, 3.0, 2, 2))
    assert reverse.RUNS.computations == 1 and len(tiny[1]) == 2               # the second did not use RUNS
    assert np.array_equal(alone[-1][0], shared[-1][0]) and len(alone[-1][3]) == len(shared[-1][3]) == 6


def test_in_lane_computes_in_its_lane_and_says_when_it_waits():
    """The Reverse tab's "from an image" and "DDPM vs DDIM" and the latent tab run through Runs.in_lane: unshared,
    in a lane slot like /sample's runs, `waiting` while no slot is free, and the final item always arrives."""
    lanes = {"short": runs.Lane("short", 1), "long": runs.Lane("long", 1)}
    r = runs.Runs(lanes=lanes, wait=0.05)
    started = []

    def compute():
        started.append(time.time())
        yield from range(50)
    assert lanes["short"].acquire(0.01)                       # the only short slot is busy
    gen = r.in_lane(compute, "short", waiting="wait")
    assert next(gen) == "wait" and next(gen) == "wait" and not started   # nothing computes while it waits
    lanes["short"].release()
    items = [x for x in gen if x != "wait"]
    assert started and items[-1] == 49 and items == sorted(items)
    assert lanes["short"].busy == 0 and r.cached() == []        # the slot is handed back; never cached
