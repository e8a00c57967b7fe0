"""Benchmarks that print numbers (not tests): python bench/run.py [--quick | --app-only | --browser-only] [--write]

Measures on this machine, in one run: tab handler latency, the reverse sampler against its bare network
calls and against diffusers' schedulers driving the same network, and the running app (start-up time, the
forward and posterior stages in Chromium, first streamed frame, concurrency, memory). `--write` replaces the
table in bench/RESULTS.md (with `--browser-only`, only its browser rows).
Needs `pip install -r bench/requirements.txt` (diffusers lives there, not in the app's requirements).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ddpm import load_pretrained  # noqa: E402
from ddpm.pretrained import cpu_has_native_bf16  # noqa: E402
from ddpm.samplers import guided, timesteps_for  # noqa: E402
from lessons import forward, posterior  # noqa: E402

ROWS: list[tuple[str, str, str]] = []


def row(what: str, value: str, aim: str = "") -> None:
    ROWS.append((what, value, aim))
    print(f"{what:<58} {value:<28} {aim}", flush=True)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q))


def bench_handlers(reps: int) -> None:
    big = Path(tempfile.mkdtemp()) / "upload-1024.png"
    from PIL import Image
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)).save(big)
    for name, handler in (("forward", forward.forward), ("posterior", posterior.posterior)):
        for label, image in (("28x28 example", "sneaker"), ("1024x1024 upload", str(big))):
            t0 = time.perf_counter()
            handler(image, 10)                                          # first call decodes the upload
            cold = time.perf_counter() - t0
            times = []
            for t in np.random.default_rng(1).integers(0, 1000, reps):
                t0 = time.perf_counter()
                handler(image, int(t))
                times.append(time.perf_counter() - t0)
            row(f"{name} handler, {label}: p50 / p95 (first call)",
                f"{pct(times, 50):.0f} / {pct(times, 95):.0f} ms ({cold * 1000:.0f} ms)", "instant while dragging")


def _diffusers_scheduler(sampler: str, steps: int):
    try:
        from diffusers import DDIMScheduler, DDPMScheduler
    except ImportError:
        return None
    if sampler == "ddim":
        # "trailing" spacing: the one where diffusers' DDIM steps from t to t - T/steps, exactly our
        # rule, so the two loops must give the same images (the speed is the same for any spacing)
        sch = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                            clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing")
    else:
        sch = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                            clip_sample=True, variance_type="fixed_small")
    sch.set_timesteps(steps)
    return sch


def _params(pipe) -> str:
    return f"{pipe.num_parameters / 1e6:.2f} M parameters"


def bench_sampler(n: int, run_ddpm: bool) -> None:
    """Our sampler, the bare network calls it makes, and diffusers' scheduler driving the same network,
    advanced in lockstep (one step of each in turn, the order rotating every step), so that a slow
    moment of this shared machine hits all three alike and the ratios are side by side."""
    precisions = ["float32"] + (["bfloat16"] if cpu_has_native_bf16() else [])
    app_precision = load_pretrained("fashion-mnist", device="cpu", precision="auto").precision
    configs = [("ddim", 50, p) for p in precisions] + ([("ddpm", 1000, app_precision)] if run_ddpm else [])
    for sampler, steps, precision in configs:
        pipe = load_pretrained("fashion-mnist", device="cpu", precision=precision)
        labels = pipe.label_indices(["Sneaker"], n)
        fn = guided(pipe.network, labels, 3.0)
        ts = timesteps_for(sampler, steps, 1000, spacing="trailing")
        sch = _diffusers_scheduler(sampler, steps)
        if sch is not None:
            assert [int(t) for t in sch.timesteps] == ts, "diffusers visits other timesteps"
        g = torch.Generator().manual_seed(0)
        # classic guidance at every step here, so that all three loops make the same network calls
        ours_frames = pipe.progressive(n=n, sampler=sampler, steps=steps, guidance_scale=3.0, labels=["Sneaker"],
                                       seed=0, spacing="trailing", guidance_interval=None)
        x, state = pipe.initial_noise(n, 0), {"xd": pipe.initial_noise(n, 0), "frame": None}

        def ours(t: int) -> None:
            state["frame"] = next(ours_frames)

        def bare(t: int) -> None:
            fn(x, torch.full((n,), t))

        def theirs(t: int) -> None:
            xd = state["xd"]
            kw = dict(use_clipped_model_output=True) if sampler == "ddim" else {}   # eps re-derived from clipped x0, as ours
            state["xd"] = sch.step(fn(xd, torch.full((n,), t)), t, xd, generator=g, **kw).prev_sample
        runners = [("ours", ours), ("bare", bare)] + ([("diffusers", theirs)] if sch is not None else [])
        times = {name: 0.0 for name, _ in runners}
        with torch.inference_mode():
            fn(x, torch.full((n,), 999))                                 # warm-up
            for i, t in enumerate(ts):
                k = i % len(runners)
                for name, run in runners[k:] + runners[:k]:
                    t0 = time.perf_counter()
                    run(t)
                    times[name] += time.perf_counter() - t0
        ours_s = times["ours"]
        name = f"{sampler.upper()}-{steps}, {n} images, guidance 3, {precision}, `fashion-mnist` ({_params(pipe)})"
        row(f"{name}: wall time", f"{ours_s:.2f} s")
        row(f"  ... / bare network calls ({times['bare']:.2f} s)", f"{ours_s / times['bare']:.3f}x", "<= 1.10x")
        if sch is None:
            row("  ... / diffusers loop", "diffusers not installed", "<= 1.0x")
            continue
        extra = ""
        if sampler == "ddim":                                            # deterministic: the same images
            diff = ((state["frame"].x_t * 2 - 1) - state["xd"].clamp(-1, 1)).abs().max().item()
            extra = f"; images differ by at most {diff:.0e}"
        row(f"  ... / diffusers {type(sch).__name__} loop ({times['diffusers']:.2f} s{extra})",
            f"{ours_s / times['diffusers']:.3f}x", "<= 1.0x")
        if sampler == "ddim" and pipe.guidance_interval:                # the app's default: fewer calls
            t0 = time.perf_counter()
            pipe.sample(n=n, sampler=sampler, steps=steps, guidance_scale=3.0, labels=["Sneaker"], seed=0)
            lo, hi = pipe.guidance_interval
            row(f"  ... guided only while {lo} <= t <= {hi} (the default)", f"{time.perf_counter() - t0:.2f} s",
                "a couple of seconds")
            # the teacher it was distilled from, same call (its own default interval), for comparison
            large = load_pretrained("fashion-mnist-large", device="cpu", precision=precision)
            t0 = time.perf_counter()
            large.sample(n=n, sampler=sampler, steps=steps, guidance_scale=3.0, labels=["Sneaker"], seed=0)
            row(f"  ... the same with `fashion-mnist-large` ({_params(large)}, the teacher)",
                f"{time.perf_counter() - t0:.2f} s")


def bench_guidance_passes(n: int) -> None:
    """DDIM-50 with a class at s = 0, 1 and 3 (classic, every step), advanced in lockstep: s = 0 and s = 1 are
    one pass of n images per step, any other s one batched pass of 2n."""
    pipe = load_pretrained("fashion-mnist", device="cpu", precision="auto")
    runs = {s: pipe.progressive(n=n, steps=50, guidance_scale=s, labels=["Sneaker"], seed=0, guidance_interval=None)
            for s in (0.0, 1.0, 3.0)}
    times = {s: 0.0 for s in runs}
    order = list(runs)
    for i in range(50):
        for s in order[i % 3:] + order[:i % 3]:
            t0 = time.perf_counter()
            next(runs[s])
            times[s] += time.perf_counter() - t0
    for s, label in ((0.0, "s = 0 (unconditional: one pass)"), (1.0, "s = 1 (conditional: one pass)"),
                     (3.0, "s = 3 at every step (two passes, batched)")):
        row(f"DDIM-50, {n} images, class Sneaker, {label}, {pipe.precision}", f"{times[s]:.2f} s",
            "s = 0 as fast as s = 1" if s == 0.0 else "")


def bench_latent(n: int = 16, steps: int = 50) -> None:
    """Latent diffusion against pixels (issue 16): DDIM-50 with classic guidance s = 3, n images, the latent model
    and the pixel model advanced in lockstep (alternating who goes first); the time of the network alone per step
    (one batched pass of 2n) and the decoder's, each the median of repeated calls."""
    lat = load_pretrained("fashion-mnist-latent", device="cpu", precision="auto")
    pix = load_pretrained("fashion-mnist", device="cpu", precision="auto")
    kw = dict(n=n, steps=steps, guidance_scale=3.0, labels=["Sneaker"], seed=0, guidance_interval=None)
    runs = {"pixel": pix.progressive(**kw), "latent": lat.progressive(**kw)}
    total = {k: 0.0 for k in runs}
    for i in range(steps):
        for k in (list(runs) if i % 2 else list(runs)[::-1]):
            t0 = time.perf_counter()
            frame = next(runs[k])
            if i == steps - 1:
                frame.x_t                          # the final pictures: the latent run decodes them (only them)
            total[k] += time.perf_counter() - t0

    def per_call(fn, reps: int = 30) -> float:
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts)) * 1000
    lab = torch.tensor([7] * n + [-1] * n)
    with torch.inference_mode():
        call = {"pixel": per_call(lambda: pix.network(torch.randn(2 * n, 1, 28, 28), torch.full((2 * n,), 500), lab)),
                "latent": per_call(lambda: lat.network(torch.randn(2 * n, 4, 7, 7), torch.full((2 * n,), 500), lab))}
        dec = per_call(lambda: lat.decode(torch.randn(n, 4, 7, 7)))
    for k, p in (("pixel", pix), ("latent", lat)):
        dims = int(np.prod(p.data_shape))
        row(f"{k} model ({_params(p)}, {dims} numbers): one network pass of 2 x {n} (guided), {p.precision}",
            f"{call[k]:.1f} ms")
    row(f"latent model: decoding {n} latents to pixels", f"{dec:.1f} ms")
    for k in runs:
        row(f"DDIM-{steps}, {n} images, s = 3 every step, {k} model (lockstep; the latent run decodes its result)",
            f"{total[k]:.2f} s", "pixel / latent: " + f"{total['pixel'] / total['latent']:.2f}x" if k == "latent" else "")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync"]

# Installed in the page once it shows its first x_t. Every time is the page's own performance.now(), so that
# Playwright's latency (tens of ms per call on this machine) counts nowhere. For each `ddpm:shown` (stage.js
# sends it after each drawn picture, detail = t): `at`, when the picture was drawn (inside the animation
# frame), and `painted`, the first task after that frame, i.e. after its style, layout, paint and commit.
_STAGE_PROBE = """(holder) => {
  const B = window.__stageBench = {keys: [], shown: [], moves: []};
  document.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowRight') B.keys.push({at: performance.now(), queued: performance.now() - e.timeStamp});
  }, true);
  document.addEventListener('ddpm:shown', (e) => {          // not bubbling: caught on its way down
    if (!e.target || e.target.id !== holder) return;
    const s = {t: Number(e.detail), at: performance.now(), painted: null};
    B.shown.push(s);
    const ch = new MessageChannel();
    ch.port1.onmessage = () => { s.painted = performance.now(); };
    ch.port2.postMessage(0);
  }, true);
}"""

# A drag dispatched inside the page: move k is due at start + k * every ms; the values go there and back
# between lo and hi, `sweeps` times. Each due move sets the range input's value and fires `input`, as the
# browser does for a dragged thumb (stage.js and Gradio's slider both listen to it); moves that fall due while
# the page is busy are dispatched late, one after another, none dropped (the browser would coalesce a real
# mouse's moves; these are not, the stricter case).
# Then `change` and `pointerup` end the drag, as a real release does.
_STAGE_DRAG = """([slider, dur, every, lo, hi, sweeps]) => new Promise((done) => {
  const r = document.querySelector('#' + slider + ' input[type=range]');
  const B = window.__stageBench; B.shown.length = 0; B.moves.length = 0;
  const n = Math.round(dur / every), start = performance.now() + every;
  let k = 0;
  const value = (k) => {
    const ph = (k / (n - 1)) * sweeps * 2 % 2;                 // 0 -> 1 -> 0, `sweeps` times
    return Math.round(lo + (hi - lo) * (ph <= 1 ? ph : 2 - ph));
  };
  const step = () => {
    while (k < n && performance.now() >= start + k * every) {
      r.value = String(value(k));
      r.dispatchEvent(new Event('input', {bubbles: true}));
      B.moves.push({due: start + k * every, at: performance.now(), v: Number(r.value)});
      k += 1;
    }
    if (k < n) { setTimeout(step, Math.max(0, start + k * every - performance.now())); return; }
    r.dispatchEvent(new Event('change', {bubbles: true}));
    r.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
    done();
  };
  setTimeout(step, every);
})"""


def _stage_rows(page, tab: str, presses: int, warmup: int, drags: int, drag_s: float, every_ms: int) -> None:
    """One tab's browser rows: an arrow key's latency, then `drags` drags' pictures per second and lag (medians)."""
    name, holder, slider = tab.capitalize(), f"{tab}-xt", f"{tab}-t"
    shown_is = "(() => { const s = window.__stageBench.shown; const l = s[s.length - 1];"
    # the first picture is on screen: stage.js has its data and the tab is visible
    # every wait polls every 100 ms, not on animation frames: headless Chromium paints no frame while the page is
    # idle, so a predicate false at its first check was never checked again (tests/browser's _until); the times
    # reported are taken inside the page, so the harness noticing up to 100 ms later changes none of them
    page.wait_for_function(f"document.querySelector('#{holder}') && document.querySelector('#{holder}').dataset.t",
                           timeout=90_000, polling=100)
    page.evaluate(_STAGE_PROBE, holder)
    page.wait_for_timeout(1500)                  # the page's other first-render requests settle
    page.locator(f"#tab-{tab} input[type=range]").first.focus()      # the t slider: the tab's first range input
    t = int(page.eval_on_selector(f"#{holder}", "e => e.dataset.t"))
    lat, drawn, queued = [], [], []
    for i in range(warmup + presses):
        t += 1
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"{shown_is} return l && l.t === {t} && l.painted !== null; }})()",
                               timeout=10_000, polling=100)
        key, shown = page.evaluate("[window.__stageBench.keys.at(-1), window.__stageBench.shown.at(-1)]")
        if i >= warmup:
            lat.append(shown["painted"] - key["at"])
            drawn.append(shown["at"] - key["at"])
            queued.append(key["queued"])
        page.wait_for_timeout(150)               # presses apart, not a held key
    row(f"{name} tab: ArrowRight on t -> new x_t painted (browser)",
        f"{np.percentile(lat, 50):.0f} / {np.percentile(lat, 95):.0f} ms (p50 / p95)", "<= 50 ms p50")
    row("  ... to the picture drawn (before paint); key event queued before its listener",
        f"{np.percentile(drawn, 50):.0f} / {np.percentile(drawn, 95):.0f} ms; {np.percentile(queued, 50):.0f} ms")

    # the drags; the main thread's CPU time (CDP Performance.getMetrics' ThreadTime) per picture shows what
    # a picture costs the page whatever else this shared machine is doing at the time
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    runs = []
    for d in range(drags):
        page.wait_for_timeout(500)
        m0 = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        page.evaluate(_STAGE_DRAG, [slider, drag_s * 1000, every_ms, 50 + d, 949 - d, 2])
        last = page.evaluate("window.__stageBench.moves.at(-1).v")
        page.wait_for_function(f"{shown_is} return l && l.t === {last} && l.painted !== null; }})()",
                               timeout=60_000, polling=100)
        m1 = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        moves, shown = page.evaluate("[window.__stageBench.moves, window.__stageBench.shown]")
        first, end = moves[0]["due"], moves[-1]["due"]          # the drag as the hand makes it: 2.98 s
        # move k's value was shown if a picture of it was drawn before the next move came
        nxt = [m["at"] for m in moves[1:]] + [float("inf")]
        runs.append(dict(
            rate=sum(1 for s in shown if first <= s["at"] <= end) / ((end - first) / 1000),
            seen=sum(1 for m, until in zip(moves, nxt)
                     if any(s["t"] == m["v"] and m["at"] <= s["at"] < until for s in shown)),
            moves=len(moves), done=(shown[-1]["painted"] - first) / 1000, late=max(m["at"] - m["due"] for m in moves),
            cpu=(m1["ThreadTime"] - m0["ThreadTime"]) * 1000 / len(shown),
            busy=(m1["TaskDuration"] - m0["TaskDuration"]) / ((shown[-1]["painted"] - first) / 1000)))
    cdp.detach()
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    rng_of = lambda k, f: f"{f.format(min(r[k] for r in runs))}-{f.format(max(r[k] for r in runs))}"  # noqa: E731
    row(f"{name} tab: {drag_s:.0f} s drag, a move every {every_ms} ms: pictures shown per second (browser)",
        f"{med['rate']:.1f}/s ({rng_of('rate', '{:.1f}')}; {med['seen']:.0f} of {runs[0]['moves']} moves' values shown)",
        ">= 25/s")
    row("  ... first move -> last move's value on screen (all processed)",
        f"{med['done']:.2f} s ({rng_of('done', '{:.2f}')}; moves dispatched up to {med['late']:.0f} ms late)", "<= 3.5 s")
    row("  ... the page's main thread: CPU per picture; busy",
        f"{med['cpu']:.1f} ms; {med['busy'] * 100:.0f} % of the drag")


def bench_stage_in_browser(url: str, presses: int = 30, warmup: int = 5, drags: int = 3, drag_s: float = 3.0,
                           every_ms: int = 20) -> None:
    """The forward and posterior stages in Chromium: t moves in the page (lessons/static/stage.js), so these time
    the page alone, from the input event to the new x_t painted. Playwright presses the keys (one call per press,
    timed inside the page); the drag's moves are dispatched by the page itself, since one page.mouse.move takes
    10-120 ms here, too slow and irregular for a move every 20 ms."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        row("Forward tab: ArrowRight on t -> new x_t painted (browser)", "playwright not installed")
        return
    row("1-minute load average as the browser rows start (browser)",
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", "an idle machine")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        try:
            for tab in ("forward", "posterior"):
                page = b.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{url}?tab={tab}")
                try:
                    _stage_rows(page, tab, presses, warmup, drags, drag_s, every_ms)
                except Exception as e:                                   # a timeout: say so, go on
                    row(f"{tab.capitalize()} tab: browser rows", f"failed: {type(e).__name__}: {str(e)[:80]}")
                page.close()
        finally:
            b.close()


def _sample_via(client) -> tuple[float | None, float]:
    """One /sample DDIM-50 x 16 call: (time to the first streamed update, time to the last)."""
    t0 = time.perf_counter()
    job = client.submit("Sneaker", "ddim", 50, 0.0, 3.0, 0, 16, api_name="/sample")
    first = None
    while not job.done():
        if first is None and job.outputs():                              # the first streamed update arrived
            first = time.perf_counter() - t0
        time.sleep(0.005)
    return first, time.perf_counter() - t0


def _sample_in_process() -> float:
    """The app's /sample handler iterated here, without the server: what the server adds is the rest."""
    from lessons import reverse
    t0 = time.perf_counter()
    for _ in reverse.sample("Sneaker", "ddim", 50, 0.0, 3.0, 0, 16):
        pass
    return time.perf_counter() - t0


@contextlib.contextmanager
def running_app(app_dir: Path = ROOT, env_extra: dict | None = None):
    """`python app.py` in app_dir on a free loopback port, as a user starts it -> (url, process, seconds until the
    page was served). env_extra: more environment for the server (bench/classroom.py's DDPM_SHARE_RUNS=0...)."""
    import urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False", **(env_extra or {}))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=app_dir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if time.perf_counter() - t0 > 180 or proc.poll() is not None:
                    raise RuntimeError("app did not start")
                time.sleep(0.2)
        yield url, proc, time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def bench_app(users: int, generations: int) -> None:
    with running_app() as (url, proc, started):
        row("python app.py -> page served", f"{started:.1f} s", "< 15 s")
        row("server resident memory after start", f"{_rss_mb(proc.pid):.0f} MB", "< 1 GB")
        _app_rows(url, proc, users, generations)


def _app_rows(url: str, proc, users: int, generations: int) -> None:
    """The running app's rows after start-up: the stages in a browser, streaming, concurrent users, memory."""
    from gradio_client import Client
    bench_stage_in_browser(url)
    # download_files=False: a browser user's machine is not the server's, but a gradio_client that
    # downloads every streamed x_t / x0 PNG spends a third of a core of *this* 2-core machine doing so
    c = Client(url, verbose=False, download_files=False)
    first, total = _sample_via(c)
    _, total_dl = _sample_via(Client(url, verbose=False))
    in_process = _sample_in_process()
    row("/sample DDIM-50, 16 images: first streamed frame", f"{first:.2f} s" if first else "n/a", "< 0.5 s")
    row("/sample DDIM-50, 16 images: end to end (gradio_client)", f"{total:.2f} s")
    row("  ... / the same handler run in this process, server idle", f"{total / in_process:.2f}x ({in_process:.2f} s)")
    row("  ... with a client that downloads every streamed frame", f"{total_dl:.2f} s")
    # concurrent users, each with its own client
    lat: list[float] = [0.0] * users

    def one(i: int) -> None:
        ci = Client(url, verbose=False, download_files=False)
        s = time.perf_counter()
        ci.submit("any", "ddim", 50, 0.0, 3.0, i, 4, api_name="/sample").result()
        lat[i] = time.perf_counter() - s
    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(users)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    row(f"{users} users at once, DDIM-50 x 4 images each: total", f"{time.perf_counter() - t0:.1f} s")
    row("  ... each user's latency (min / median / max)",
        f"{min(lat):.1f} / {statistics.median(lat):.1f} / {max(lat):.1f} s")
    mem = []
    for k in range(generations):
        c.submit("any", "ddim", 20, 0.0, 3.0, k, 16, api_name="/sample").result()
        if k + 1 in (10, generations):
            mem.append(_rss_mb(proc.pid))
    row(f"server memory after 10 / {generations} generations", f"{mem[0]:.0f} / {mem[-1]:.0f} MB",
        "< 1 GB, no growth")


def write_results(path: Path, browser_only: bool = False) -> None:
    """Replace the table between the markers in RESULTS.md; the notes written around it stay. With
    `browser_only`, only the table's browser rows (those whose label says "(browser)") are replaced, where the
    first of them stood, and the table's first line says when they were measured."""
    start, end = "<!-- table -->", "<!-- /table -->"
    text = path.read_text() if path.exists() else f"# Benchmark results\n\n{start}\n{end}\n"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    old, tail = rest.split(end, 1)
    lines = [f"| {a} | {b} | {c} |" for a, b, c in ROWS]
    if browser_only:
        old_lines = old.strip("\n").split("\n")
        # a browser row and the "  ..." rows under it
        keep, at, in_browser = [], None, False
        for line in old_lines:
            label = line.split("|")[1] if line.startswith("| ") else ""
            if "(browser)" in label:
                in_browser, at = True, len(keep) if at is None else at
            elif not label.startswith("   ..."):
                in_browser = False
            if not in_browser:
                keep.append(line)
        at = len(keep) if at is None else at
        keep[at:at] = lines
        note = (f" The browser rows: {time.strftime('%Y-%m-%d')}, `python bench/run.py --browser-only` "
                f"(1-minute load average {os.getloadavg()[0]:.1f} at the end).")
        keep[0] = keep[0].split(" The browser rows:")[0] + note
        path.write_text(f"{head}{start}\n" + "\n".join(keep) + f"\n{end}{tail}")
        return
    cpu = f"{torch.backends.cpu.get_cpu_capability()}{', native bfloat16' if cpu_has_native_bf16() else ', no native bfloat16'}"
    table = (f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} ({cpu}), {os.cpu_count()} CPU cores, "
             f"torch {torch.__version__} ({torch.get_num_threads()} threads), `python bench/run.py`.\n\n"
             "| measurement | value | aim |\n|---|---|---|\n" + "\n".join(lines) + "\n")
    path.write_text(f"{head}{start}\n{table}{end}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, no DDPM-1000, no app")
    ap.add_argument("--write", action="store_true", help="write the table to bench/RESULTS.md")
    ap.add_argument("--app-only", action="store_true", help="only the running-app rows (start-up, streaming, users)")
    ap.add_argument("--browser-only", action="store_true",
                    help="only the browser rows (the forward and posterior stages in Chromium; starts the app itself); "
                         "with --write, only those rows of the table are replaced")
    ap.add_argument("--no-ddpm", action="store_true", help="everything but DDPM-1000 (slow on a CPU)")
    ap.add_argument("--latent-only", action="store_true", help="only the latent-against-pixel rows")
    a = ap.parse_args()
    print(f"{'measurement':<58} {'value':<28} aim")
    if a.latent_only:
        bench_latent(16)
    elif a.browser_only:
        with running_app() as (url, _, _):
            bench_stage_in_browser(url)
    else:
        if not a.app_only:
            bench_handlers(10 if a.quick else 50)
            bench_sampler(16, run_ddpm=not (a.quick or a.no_ddpm))
            bench_guidance_passes(16)
            bench_latent(16)
        if not a.quick:
            bench_app(users=8, generations=20)
    if a.write:
        write_results(ROOT / "bench" / "RESULTS.md", browser_only=a.browser_only)


if __name__ == "__main__":
    main()
