"""A class of 30 on one free CPU: the running app under a classroom's burst of /sample calls (issue 18).

    python bench/classroom.py                       # this checkout's app: scenarios a, a-replay, b, c, twice
    python bench/classroom.py --before              # the same against the last commit's app (git archive HEAD)
    python bench/classroom.py --report              # only the table and the plot, from bench/out/classroom-*.json

Each learner is a gradio_client Client of its own, made before the burst (and with one /forward call made, as a
browser that has loaded the page has its session), that does not download the streamed PNGs
(`download_files=False`: a browser's CPU is not the server's). One thread polls every job every 10 ms and
notes, per learner, when its first streamed update came (the x_T snow) and when the update with the final
picture came ("step N/N"). Scenarios, each bounded in time (a learner not done by then counts as not done):

  a         30 learners open the same deep link at once: DDIM-50 x 16, guidance 3, seed 0, Sneaker.
            Targets: every first frame <= 1 s, every final picture <= 8 s.
  a-replay  the same 30 again right after a: the finished run, replayed from memory.
  b         30 learners with distinct seeds, DDIM-4 x 16 on `fashion-mnist-4step` where the app offers it,
            else on `fashion-mnist` (the report says which). Target: p95 final <= 10 s.
  c         the link of a, but 2 of the 30 chose DDPM-1000 x 16 (seeds of their own) and press Generate 1 s
            before the others. Target: the other 28 as in a. The DDPM learners are cancelled (Stop) once
            the 28 are done; their rows say how far they got.

Every repeat uses seeds no earlier repeat used (a's first repeat is the link's seed 0), so nothing comes from
the cache except in a-replay. The server's resident memory is read before the first repeat and after each one.
Results go to bench/out/classroom-<label>.json; the table is printed and a plot written to
bench/out/classroom.png, with a small copy in bench/classroom.png for RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from run import _rss_mb, running_app  # noqa: E402  (bench/ is on the path: python bench/classroom.py)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
LINK = dict(label="Sneaker", sampler="ddim", steps=50, eta=0.0, guidance=3.0, n=16)
TARGETS = {"a": (1.0, 8.0), "a-replay": (1.0, 8.0), "c": (1.0, 8.0)}      # (every first frame, every final) s
B_P95 = 10.0


def cpu_s(pid: int) -> float:
    """The process's CPU time so far (user + system), seconds: what the server spent, whatever else ran."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_before(dest: Path) -> Path:
    """The last commit's app (app.py, lessons, ddpm, assets) in dest, via `git archive HEAD` (read-only on git)."""
    if not (dest / "app.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        arch = subprocess.run(["git", "archive", "HEAD", "app.py", "lessons", "ddpm", "assets"], cwd=ROOT,
                              check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    return dest


class Learner:
    def __init__(self, url: str):
        """A learner who has opened the page: the client, and its session on the server (a browser gets one when
        the page loads; Gradio builds it on a session's first call, ~0.2 s of its event loop here)."""
        from gradio_client import Client
        self.client = Client(url, verbose=False, download_files=False, ssl_verify=False)
        self.client.predict(None, 10, "linear", 1000, 1e-4, 0.02, api_name="/forward")

    def submit(self, label, sampler, steps, eta, guidance, seed, n, model=None):
        # guidance_until left out: the API fills in the slider's default (a None would be refused by the slider)
        kw = {"model": model} if model else {}
        return self.client.submit(label, sampler, steps, eta, guidance, seed, n, api_name="/sample", **kw)


def watch(jobs: list[dict], expected: int, deadline: float) -> None:
    """Poll the jobs (appended to `jobs` while this runs, `expected` in all) until each of those not marked `cut`
    has its final update (or failed), or until `deadline` (perf_counter); the `cut` ones (the DDPM learners of c)
    only get their first frame and progress noted."""
    done: set[int] = set()
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        for k, j in enumerate(list(jobs)):
            if k in done:
                continue
            outs = j["job"].outputs()
            if outs and j["first"] is None:
                j["first"] = now - j["t0"]
            if outs:
                last = outs[-1]
                text = last[2] if isinstance(last, (tuple, list)) and len(last) > 2 else ""
                j["progress"] = text if isinstance(text, str) and text else j.get("progress", "")
                if isinstance(text, str) and f"{j['total']}/{j['total']}" in text:
                    j["final"] = now - j["t0"]
                    done.add(k)
                    continue
            if j["job"].done():
                if j["final"] is None:
                    try:
                        j["job"].result()
                        j["error"] = "ended without its final picture"
                    except Exception as e:   # noqa: BLE001 - reported
                        j["error"] = f"{type(e).__name__}: {str(e)[:100]}"
                done.add(k)
        if len(jobs) == expected and all(k in done or j["cut"] for k, j in enumerate(jobs)):
            return
        time.sleep(0.01)


def drain(jobs: list[dict], timeout: float = 60.0) -> None:
    """Cancel what is still running or queued (Stop) and wait until the server has let go of every job."""
    for j in jobs:
        if not j["job"].done():
            j["job"].cancel()
    t_end = time.perf_counter() + timeout
    while time.perf_counter() < t_end and not all(j["job"].done() for j in jobs):
        time.sleep(0.05)


def scenario(name: str, learners: list[Learner], rep: int, model_b: str, deadline_s: float) -> list[dict]:
    """One burst; -> a row per learner: {who, first, final, error, progress}."""
    seed0 = 0 if rep == 0 else 1000 * rep                  # a fresh seed every repeat (a's first is the link's 0)
    plan = []                                              # (learner, args, total steps, who, delay)
    if name in ("a", "a-replay"):
        plan = [(lr, (LINK["label"], "ddim", 50, 0.0, 3.0, seed0, 16), 50, "link", 0.0) for lr in learners]
    elif name == "b":
        steps_model = (None if model_b == "fashion-mnist" else model_b)
        plan = [(lr, ("Sneaker", "ddim", 4, 0.0, 3.0, seed0 + 100 + i, 16) + ((steps_model,) if steps_model else ()),
                 4, "seed", 0.0) for i, lr in enumerate(learners)]
    elif name == "c":
        seed = seed0 + 7                                   # not a's seed: a's run would come from the cache
        for i, lr in enumerate(learners):
            if i < 2:
                plan.append((lr, (LINK["label"], "ddpm", 1000, 0.0, 3.0, seed + 1 + i, 16), 1000, "ddpm", 0.0))
            else:
                plan.append((lr, (LINK["label"], "ddim", 50, 0.0, 3.0, seed, 16), 50, "link", 1.0))
    jobs: list[dict] = []
    start = time.perf_counter()
    watcher = threading.Thread(target=watch, args=(jobs, len(plan), start + deadline_s))
    watcher.start()                                        # polls from the first submit on
    for lr, args, total, who, delay in sorted(plan, key=lambda p: p[4]):
        wait = start + delay - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        t0 = time.perf_counter()
        job = lr.submit(*args[:7], model=args[7]) if len(args) == 8 else lr.submit(*args)
        jobs.append(dict(job=job, t0=t0, total=total, who=who, first=None, final=None, error=None, progress="",
                         cut=who == "ddpm"))
    watcher.join()
    for j in jobs:
        if j["final"] is None and j["error"] is None and not j["cut"]:
            j["error"] = f"not done within {deadline_s:.0f} s"
    drain(jobs)
    time.sleep(1.0)                                        # a cancelled run stops at its next step
    return [dict(who=j["who"], first=j["first"], final=j["final"], error=j["error"],
                 progress=_step_of(j.get("progress", ""))) for j in jobs]


def _step_of(text: str) -> str:
    import re
    m = re.search(r"(\d+)/(\d+)", text or "")
    return f"{m.group(1)}/{m.group(2)}" if m else ""


def four_step_model(url: str) -> str:
    """`fashion-mnist-4step` if the app offers it (its /sample accepts it), else `fashion-mnist`."""
    sys.path.insert(0, str(ROOT))
    try:
        from ddpm.pretrained import available
        if "fashion-mnist-4step" not in available():
            return "fashion-mnist"
        from gradio_client import Client
        Client(url, verbose=False, download_files=False).predict("any", "ddim", 4, 0.0, 3.0, 0, 1,
                                                                   model="fashion-mnist-4step", api_name="/sample")
        return "fashion-mnist-4step"
    except Exception:   # noqa: BLE001 - not offered by this app
        return "fashion-mnist"


def run(label: str, app_dir: Path, scenarios: list[str], repeats: int, learners: int, env_extra: dict) -> dict:
    result = dict(label=label, app_dir=str(app_dir), learners=learners, started=time.strftime("%Y-%m-%d %H:%M"),
                  load_before=os.getloadavg()[0], repeats=[])
    with running_app(app_dir, env_extra) as (url, proc, _):
        model_b = four_step_model(url)
        result["model_b"] = model_b
        warm = Learner(url)
        warm.submit("any", "ddim", 2, 0.0, 3.0, 99999, 1).result()          # the first network call's warm-up
        crowd = [Learner(url) for _ in range(learners)]
        result["rss_start"] = _rss_mb(proc.pid)
        print(f"[{label}] app up at {url}; RSS {result['rss_start']:.0f} MB; (b) on {model_b}", flush=True)
        for rep in range(repeats):
            rows, cpu, load = {}, {}, {}
            for name in scenarios:
                deadline = {"a": 200, "a-replay": 60, "b": 120, "c": 150}[name]
                c0, load0 = cpu_s(proc.pid), os.getloadavg()[0]
                rows[name] = scenario(name, crowd, rep, model_b, deadline)
                cpu[name] = cpu_s(proc.pid) - c0
                load[name] = (load0 + os.getloadavg()[0]) / 2
                print(f"[{label}] repeat {rep + 1} {name}: {summary(name, rows[name])}; server CPU {cpu[name]:.1f} s; "
                      f"load {load[name]:.1f}", flush=True)
            result["repeats"].append(dict(rows=rows, rss=_rss_mb(proc.pid), load=os.getloadavg()[0], cpu=cpu,
                                          loads=load))
            print(f"[{label}] repeat {rep + 1}: 1-minute load average {os.getloadavg()[0]:.1f}", flush=True)
            print(f"[{label}] repeat {rep + 1}: server RSS {result['repeats'][-1]['rss']:.0f} MB", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"classroom-{label}.json").write_text(json.dumps(result, indent=1))
    return result


def _q(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo = int(k)
    return xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (k - lo)


def summary(name: str, rows: list[dict]) -> str:
    main = [r for r in rows if r["who"] != "ddpm"]
    firsts = [r["first"] for r in main if r["first"] is not None]
    finals = [r["final"] for r in main if r["final"] is not None]
    s = (f"{len(finals)}/{len(main)} done; first frame max {max(firsts, default=float('nan')):.2f} s; final "
         f"median {_q(finals, .5):.1f} / p95 {_q(finals, .95):.1f} / max {max(finals, default=float('nan')):.1f} s")
    ddpm = [r for r in rows if r["who"] == "ddpm"]
    if ddpm:
        s += "; DDPM learners: " + ", ".join(
            f"first {r['first']:.2f} s, step {r['progress'] or '?'} at the cut" if r["first"] is not None
            else "no frame" for r in ddpm)
    errors = sorted({r["error"] for r in main if r["error"]})
    return s + (f"; errors: {errors}" if errors else "")


def verdict(name: str, rows: list[dict]) -> str:
    main = [r for r in rows if r["who"] != "ddpm"]
    finals = [r["final"] for r in main]
    if any(f is None for f in finals):
        return "no"
    if name == "b":
        return "yes" if _q(finals, .95) <= B_P95 else "no"
    first_t, final_t = TARGETS[name]
    return "yes" if max(r["first"] for r in main) <= first_t and max(finals) <= final_t else "no"


def _fmt(x, f: str) -> str:
    return "-" if x is None else f.format(x)


def report(results: list[dict]) -> str:
    lines = ["| scenario | app | repeat | done | first frame: median / max | final: median / p95 / max | target met | "
             "server CPU | load |", "|---|---|---|---|---|---|---|---|---|"]
    names = {"a": "a · 30 × same link (DDIM-50 × 16, s = 3)", "a-replay": "a-replay · the same 30 again (cached)",
             "b": "b · 30 × distinct seeds, DDIM-4 × 16", "c": "c · 28 × link + 2 × DDPM-1000 × 16"}
    order = ["a", "a-replay", "b", "c"]
    for name in order:
        for res in results:
            for k, rep in enumerate(res["repeats"]):
                rows = rep["rows"].get(name)
                if not rows:
                    continue
                main = [r for r in rows if r["who"] != "ddpm"]
                firsts = [r["first"] for r in main if r["first"] is not None]
                finals = [r["final"] for r in main if r["final"] is not None]
                what = names[name] + (f" on `{res['model_b']}`" if name == "b" else "")
                fin = (f"{_q(finals, .5):.1f} / {_q(finals, .95):.1f} / {max(finals):.1f} s" if finals else "-")
                fst = f"{_q(firsts, .5):.2f} / {max(firsts):.2f} s" if firsts else "none"
                lines.append(f"| {what} | {res['label']} | {k + 1} | {len(finals)}/{len(main)} | {fst} | {fin} | "
                             f"{verdict(name, rows)} | {_fmt(rep.get('cpu', {}).get(name), '{:.0f} s')} | "
                             f"{_fmt(rep.get('loads', {}).get(name), '{:.1f}')} |")
                for r in rows:
                    if r["who"] == "ddpm":
                        first = f"{r['first']:.2f} s" if r["first"] is not None else "none"
                        lines.append(f"|   ... one of the 2 DDPM-1000 × 16 learners | {res['label']} | {k + 1} | - | "
                                     f"first frame {first} | " + (f"cancelled at step {r['progress']}" if r["progress"] else
                                                                     "cancelled while still waiting for the long lane")
                                     + " once the 28 were done | | | |")
    mem = "; ".join(f"{r['label']}: {r['rss_start']:.0f} → " + " → ".join(f"{x['rss']:.0f}" for x in r["repeats"])
                    + " MB" for r in results)
    return "\n".join(lines) + f"\n\nServer resident memory (start → after each repeat): {mem}."


def plot(results: list[dict], path: Path, small: Path | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    names = [n for n in ["a", "a-replay", "b", "c"] if any(n in rep["rows"] for r in results for rep in r["repeats"])]
    fig, axes = plt.subplots(1, len(names), figsize=(3.1 * len(names), 3.4), sharey=True, squeeze=False)
    rng = np.random.default_rng(0)
    for ax, name in zip(axes[0], names):
        ticks, labels, x = [], [], 0
        for res in results:
            for k, rep in enumerate(res["repeats"]):
                rows = [r for r in rep["rows"].get(name, []) if r["who"] != "ddpm"]
                if not rows:
                    continue
                col = "#c0392b" if res["label"] == "before" else "#2471a3"
                fin = [r["final"] if r["final"] is not None else 250 for r in rows]
                fst = [r["first"] if r["first"] is not None else 250 for r in rows]
                jit = rng.uniform(-0.18, 0.18, len(rows))
                ax.scatter(x + jit, fin, s=9, color=col, alpha=0.8, label="final picture" if x == 0 else None)
                ax.scatter(x + jit, fst, s=9, color=col, marker="x", alpha=0.6, linewidths=0.8,
                           label="first frame" if x == 0 else None)
                missing = sum(r["final"] is None for r in rows)
                if missing:
                    ax.text(x, 150, f"{missing} not\ndone", ha="center", va="top", fontsize=6)
                ticks.append(x)
                labels.append(f"{res['label']}\n#{k + 1}")
                x += 1
        if name == "b":
            ax.axhline(B_P95, color="grey", lw=0.8, ls="--")
        else:
            for t in TARGETS[name]:
                ax.axhline(t, color="grey", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xticks(ticks, labels, fontsize=7)
        ax.set_title({"a": "a: 30 × same link", "a-replay": "a again (cached)", "b": "b: 30 distinct seeds, 4 steps",
                      "c": "c: 28 × link + 2 × DDPM-1000"}[name], fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3, which="both")
    axes[0][0].set_ylabel("seconds after Generate (log)", fontsize=8)
    axes[0][0].legend(fontsize=6, loc="upper left")
    fig.suptitle("/sample under a class of 30 (dots: final picture, ×: first frame; dashed: targets; "
                 "not done within the time limit: at the top)", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    if small is not None:
        from PIL import Image
        fig.savefig(small, dpi=95)
        im = Image.open(small).convert("RGB").quantize(colors=48)
        im.save(small, optimize=True)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", action="store_true", help="measure the last commit's app (git archive HEAD)")
    ap.add_argument("--no-share", action="store_true", help="this checkout with DDPM_SHARE_RUNS=0")
    ap.add_argument("--scenarios", default="a,a-replay,b,c")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--learners", type=int, default=30)
    ap.add_argument("--arenas", type=int, default=None,
                    help="this checkout with DDPM_MALLOC_ARENAS=N (0: glibc's default; the app's default is 2)")
    ap.add_argument("--report", action="store_true", help="only print the table and draw the plot")
    a = ap.parse_args()
    if not a.report:
        env, app_dir, label = {}, ROOT, "after"
        if a.before:
            app_dir, label = make_before(Path(tempfile.gettempdir()) / "classroom-before"), "before"
        elif a.no_share:
            env, label = {"DDPM_SHARE_RUNS": "0"}, "no-share"
        elif a.arenas is not None:
            env, label = {"DDPM_MALLOC_ARENAS": str(a.arenas)}, f"arenas-{a.arenas}"
        run(label, app_dir, a.scenarios.split(","), a.repeats, a.learners, env)
    results = [json.loads((OUT / f"classroom-{k}.json").read_text()) for k in ("before", "no-share", "arenas-0", "after")
               if (OUT / f"classroom-{k}.json").exists()]
    print(report(results))
    plot(results, OUT / "classroom.png", ROOT / "bench" / "classroom.png")
    print(f"plot: {OUT / 'classroom.png'}; small copy: bench/classroom.png "
          f"({(ROOT / 'bench' / 'classroom.png').stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
