"""A real browser (Debian's Chromium, driven by Playwright) clicking through the real page."""
import os
import shutil
from pathlib import Path

import pytest

import numpy as np
import torch

from ddpm import SCHEDULES, make_schedule, q_posterior, q_sample
from lessons import reverse
from lessons.common import fmt, load_image, noise_like

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", "/tmp/ddpm-browser-shots"))


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    pg.close()
    assert not errors, errors


def _src(page, elem_label: str) -> str:
    img = page.locator(f"[data-testid='image']:has-text('{elem_label}') img, "
                       f"div.block:has(label:text-is('{elem_label}')) img").first
    return img.get_attribute("src") or ""


TABS = {"en": ["1 · Forward", "2 · Posterior", "3 · Reverse", "4 · Training", "5 · Latent", "6 · Quiz"],
        "zh": ["1 · 前向", "2 · 后验", "3 · 反向", "4 · 训练", "5 · 潜空间", "6 · 面试题"]}
VIEWPORTS = {"desktop": {"width": 1400, "height": 1000}, "phone": {"width": 390, "height": 844}}


def _box(page, selector: str) -> dict:
    return page.evaluate(f"""() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();
        return {{top: r.top + scrollY, bottom: r.bottom + scrollY, left: r.left, right: r.right}}; }}""")


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_stage_leads_every_tab_and_every_tab_is_reachable(browser, app_url, lang, size):
    """Touch first: the picture and its control sit on the first screen; the lesson beside the stage on a desktop,
    below it on a phone; every tab is a visible button (no overflow menu), in both languages and both widths."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport=VIEWPORTS[size])
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    height = VIEWPORTS[size]["height"]
    page.goto(app_url + f"?lang={lang}")
    _until(page, "document.querySelector('#forward-xt')?.dataset.t === '250'", timeout=30_000)
    page.get_by_role("tab", name=TABS[lang][0], selected=True).wait_for(timeout=15_000)
    for name in TABS[lang]:
        assert page.get_by_role("tab", name=name, exact=True).is_visible(), name
    xt, slider = _box(page, "#forward-xt"), _box(page, "#tab-forward input[type=range]")
    lesson = _box(page, "#tab-forward .lesson-col")
    assert slider["bottom"] < height and xt["bottom"] < height, (xt, slider)
    if size == "desktop":
        assert _box(page, "#forward-hist")["bottom"] < height                 # the whole stage, charts included
        assert lesson["left"] >= xt["right"] and lesson["top"] < 400          # beside it, not above or below
    else:
        assert lesson["top"] > slider["bottom"]                               # below the stage
    assert page.title().count("DDPM") == 1 and page.locator("h1").count() == 1   # the title once
    page.screenshot(path=str(SHOTS / f"forward-{size}-{lang}.png"))
    for name, first in ((TABS[lang][1], "#tab-posterior input[type=range]"), (TABS[lang][2], "#reverse-generate")):
        page.get_by_role("tab", name=name, exact=True).click()
        page.wait_for_timeout(800)
        assert _box(page, first)["bottom"] < height, (name, _box(page, first))
    generate = page.get_by_role("button", name="Generate" if lang == "en" else "生成", exact=True)
    assert generate.is_visible()
    page.get_by_role("tab", name=TABS[lang][3], exact=True).click()
    _until(page, "document.querySelector('#flow-canvas')?.dataset.step === '100'", timeout=30_000)
    assert _box(page, "#flow-canvas")["top"] < height
    page.get_by_role("tab", name=TABS[lang][4], exact=True).click()
    _wait_t(page, "#latent-xt", 500)
    assert _box(page, "#latent-xt")["bottom"] < height and _box(page, "#tab-latent input[type=range]")["bottom"] < height
    page.get_by_role("tab", name=TABS[lang][5], exact=True).click()
    page.close()
    assert not errors, errors


def _canvas(page, selector: str) -> np.ndarray:
    """The canvas's own pixels (one per image pixel): (H, W, 3) uint8."""
    w, h, data = page.evaluate(f"""() => {{ const c = document.querySelector({selector!r});
        return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }}""")
    return np.asarray(data, np.uint8).reshape(h, w, 4)[..., :3]


def _picture(x: torch.Tensor) -> np.ndarray:
    """lessons.common.to_picture without the upscaling: (1, C, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    x = ((x[0].clamp(-1, 1) + 1) * 127.5).round().byte()
    return x.expand(3, -1, -1).permute(1, 2, 0).numpy()


def _until(page, predicate: str, timeout: int) -> None:
    """Wait until the JavaScript `predicate` is true, checking every 100 ms. Not on animation frames (Playwright's
    default): this headless Chromium paints no frame while the page is idle, so a predicate that was false at its
    first check was never checked again (seen: a 60 s timeout with the predicate true from the second second on)."""
    page.wait_for_function(predicate, timeout=timeout, polling=100)


def _wait_t(page, holder: str, t: int) -> None:
    _until(page, f"document.querySelector('{holder}')?.dataset.t === '{t}'", timeout=60_000)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_the_page_draws_q_sample(page, app_url, schedule):
    """The forward stage combines x_0, eps and ddpm's tables in the browser: its picture equals ddpm.q_sample to
    within 1/255 at several t, set by a deep link, by the arrow keys and by the number box."""
    image = "photo-cat" if schedule == "cosine" else "sneaker"               # one colour image too
    page.goto(app_url + f"?tab=forward&schedule={schedule}&t=600&image={image}")
    s = make_schedule(schedule, 1000)
    x0 = load_image(image)
    eps = noise_like(x0)
    _wait_t(page, "#forward-xt", 600)
    page.wait_for_timeout(500)
    slider = page.locator("#tab-forward input[type=range]").first
    for how, t in (("link", 600), ("key", 601), ("key", 602), ("box", 37), ("box", 999), ("box", 0)):
        if how == "key":
            slider.focus()
            slider.press("ArrowRight")
        elif how == "box":
            box = page.locator("#forward-t input[type=number]").first
            box.fill(str(t))
            box.press("Enter")
        # this t, and this schedule's coefficient (the deep link's schedule and image may arrive after its t)
        _wait_t(page, "#forward-xt", t)
        _until(page, f"document.querySelector('#forward-eq-a')?.innerText === '{fmt(s.sqrt_alphas_cumprod[t])}'"
                     f" && document.querySelector('#forward-xt canvas').width === {x0.shape[-1]}",
                     timeout=60_000)
        got = _canvas(page, "#forward-xt canvas").astype(int)
        want = _picture(q_sample(s, x0, t, eps)).astype(int)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1, (schedule, how, t)


def test_the_page_draws_the_posterior(page, app_url):
    """The posterior stage: x_t, mu-tilde = coef1 x_0 + coef2 x_t and a draw mu-tilde + sqrt(beta-tilde) z, against
    ddpm.q_posterior and the /posterior handler's own draw."""
    page.goto(app_url + "?tab=posterior&t=300&schedule=cosine&image=trouser")
    s = make_schedule("cosine", 1000)
    x0 = load_image("trouser")
    for t in (300, 301, 0):
        if t != 300:
            box = page.locator("#posterior-t input[type=number]").first
            box.fill(str(t))
            box.press("Enter")
        _wait_t(page, "#posterior-xt", t)
        _until(page, "document.querySelector('#posterior-eq-c1')?.innerText === "
                     f"'{fmt(s.posterior_mean_coef1[t])}'", timeout=30_000)
        x_t = q_sample(s, x0, t, noise_like(x0))
        mean, var, _ = q_posterior(s, x0, x_t, t)
        z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
        for sel, want in (("#posterior-xt canvas", x_t), ("#posterior-mu-canvas", mean),
                          ("#posterior-draw-canvas", mean + var.sqrt() * z)):
            got = _canvas(page, sel).astype(int)
            assert np.abs(got - _picture(want).astype(int)).max() <= 1, (sel, t)


def test_the_latent_stage_draws_q_sample_on_pixels_and_latents(page, app_url):
    """The latent tab's stage: x_t (Eq. 4 on pixels) and z_t (Eq. 4 on the latents z_0 = E(x_0)) are computed in
    the browser from ddpm's numbers; D(z_t) is the server's decoding. All three against ddpm at several t."""
    from lessons import latent
    p = latent.pipe()
    page.goto(app_url + "?tab=latent&t=300&image=trouser")
    x0 = reverse.to_model_image("trouser")                                  # (1, 1, 28, 28) in [0, 1]
    z0 = p.encode(x0)
    eps_x, eps_z = noise_like(x0, 0), noise_like(z0, 1)
    for t in (300, 305, 0, 995):
        if t != 300:
            box = page.locator("#latent-t input[type=number]").first
            box.fill(str(t))
            box.press("Enter")
        _wait_t(page, "#latent-xt", t)
        _until(page, f"document.querySelector('#latent-eq-a')?.innerText === "
                     f"'{fmt(p.schedule.sqrt_alphas_cumprod[t])}'", timeout=30_000)
        got = _canvas(page, "#latent-xt canvas").astype(int)
        assert np.abs(got - _picture(q_sample(p.schedule, x0 * 2 - 1, t, eps_x)).astype(int)).max() <= 1, t
        z_t = q_sample(p.schedule, z0, t, eps_z)                            # (1, 4, 7, 7)
        for k in range(4):
            got = _canvas(page, f"#latent-zt canvas:nth-child({k + 1})").astype(int)
            assert np.abs(got - _picture(z_t[:, k:k + 1] / 3).astype(int)).max() <= 1, (t, k)
        got = _canvas(page, "#latent-dzt-canvas").astype(int)
        assert np.abs(got - _picture(p.decode(z_t) * 2 - 1).astype(int)).max() <= 2, t
    page.locator("#latent-generate").click()
    _until(page, "(document.querySelector('#latent-cost')?.innerText || '').includes('Step 50/50')",
                 timeout=120_000)


def test_the_4_step_model_hides_the_guidance_sliders(page, app_url):
    page.goto(app_url + "?tab=reverse")
    page.get_by_role("tab", name="3 · Reverse", selected=True).wait_for(timeout=15_000)
    scale = page.get_by_label("number input for Guidance scale s")
    scale.wait_for(timeout=15_000)
    page.locator('input[type=radio][value="fashion-mnist-4step"]').click()
    _until(page, "document.querySelector('input[aria-label=\"number input for DDIM steps\"]')"
                 "?.value === '4'", timeout=15_000)
    assert not scale.is_visible()
    page.locator('input[type=radio][value="fashion-mnist"]').click()
    scale.wait_for(state="visible", timeout=15_000)
    page.goto(app_url + "?tab=reverse&model=fashion-mnist-4step&steps=4")     # a deep link hides them too
    _until(page, "document.querySelector('input[type=radio][value=\"fashion-mnist-4step\"]')"
                 "?.getAttribute('aria-checked') === 'true'", timeout=15_000)
    scale.wait_for(state="hidden", timeout=15_000)


def test_chinese_and_a_streamed_generation(page, app_url):
    page.goto(app_url + "?tab=reverse&steps=10&n=4&label=Sneaker&seed=7")
    # before any run the tab shows the snow x_T of the linked seed that Generate will start from
    _until(page, "(document.querySelector('#reverse-progress')?.innerText || '').includes('seed 7')",
                 timeout=30_000)
    page.get_by_text("中文").click()
    page.get_by_role("tab", name="3 · 反向").wait_for(timeout=15_000)
    assert page.get_by_role("tab", name="1 · 前向").is_visible()
    page.get_by_role("button", name="生成", exact=True).click()
    progress = page.locator("#reverse-progress")
    seen = set()
    for _ in range(200):
        txt = progress.inner_text()
        if "/10" in txt:
            seen.add(txt.split("·")[0].strip())
        if "10/10" in txt:
            break
        page.wait_for_timeout(100)
    assert "第 10/10 步" in progress.inner_text()                       # the progress speaks Chinese too
    assert len(seen) >= 2, seen                                     # frames arrived one by one, not all at once
    page.screenshot(path=str(SHOTS / "reverse-zh.png"), full_page=True)


def test_deep_link_selects_tab_and_settings(page, app_url):
    page.goto(app_url + "?tab=posterior&t=321&schedule=cosine")
    _wait_t(page, "#posterior-xt", 321)
    assert page.locator(".posterior-eq-t").first.inner_text() == "321"
    assert page.get_by_role("tab", name="2 · Posterior", selected=True).is_visible()
    page.goto(app_url + "?tab=reverse&label=Bag&guidance=5&guide_until=999&steps=20&model=fashion-mnist-large")
    page.get_by_role("tab", name="3 · Reverse", selected=True).wait_for(timeout=15_000)
    until = "document.querySelector('input[aria-label=\"number input for only while t ≤\"]')?.value"
    _until(page, f"{until} === '999'", timeout=15_000)
    assert page.get_by_label("number input for Guidance scale s").input_value() == "5"
    assert page.get_by_label("number input for DDIM steps").input_value() == "20"
    _until(page, "document.querySelector('input[type=radio][value=\"fashion-mnist-large\"]')"
                 ".getAttribute('aria-checked') === 'true'", timeout=15_000)
    # choosing the other model by hand moves "only while t <=" to that model's own default
    page.locator('input[type=radio][value="fashion-mnist"]').click()
    _until(page, f"{until} === '{reverse.default_guidance_until('fashion-mnist')}'", timeout=15_000)


def test_a_chinese_deep_link_shows_the_chinese_class_name(page, app_url):
    page.goto(app_url + "?tab=reverse&label=Bag&lang=zh")
    page.get_by_role("tab", name=TABS["zh"][2], selected=True).wait_for(timeout=15_000)
    _until(page, "document.querySelector('input[aria-label=\"类别\"]')?.value === '包'", timeout=15_000)


def test_stop_cancels_a_running_generation(page, app_url):
    page.goto(app_url + "?tab=reverse&sampler=ddpm&n=12")
    page.get_by_role("tab", name="3 · Reverse", selected=True).wait_for(timeout=15_000)
    # click only once the deep link has been applied: a click during the page's start-up can be lost
    _until(page, "document.querySelector('input[aria-label=\"number input for Images\"]')"
                 "?.value === '12'", timeout=30_000)
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Generate", exact=True).click()
    progress = page.locator("#reverse-progress")
    _until(page, "document.querySelector('#reverse-progress').innerText.includes('step')", timeout=60_000)
    page.get_by_role("button", name="Stop", exact=True).click()
    page.wait_for_timeout(1500)
    stopped_at = progress.inner_text()
    page.wait_for_timeout(2000)
    assert progress.inner_text() == stopped_at and "1000/1000" not in stopped_at


def test_the_score_field_follows_t_without_asking_the_server(page, app_url):
    """The Training tab's score field: the server sends the field at every t once per toy, so typing another t
    redraws the arrows in the page; no request to the server comes from the t box (the page's own start-up
    requests for the other tabs may still be running, so the requests are told apart by what triggered them)."""
    import json
    from lessons.paths import T_DEFAULT
    page.goto(app_url + "?tab=training")
    page.locator("#paths").get_by_text("Paths, steps and the score").first.click()     # opening it sends the field
    _wait_t(page, "#score-canvas", T_DEFAULT)
    page.wait_for_timeout(500)
    before = page.evaluate("document.querySelector('#score-canvas').toDataURL()")
    # the events the t slider triggers: [id, runs a server function?]
    events = page.evaluate("""() => { const c = window.gradio_config;
        const id = c.components.find((x) => x.props && x.props.elem_id === 'score-t').id;
        return c.dependencies.filter((d) => d.targets.some((t) => t[0] === id)).map((d) => [d.id, d.backend_fn]); }""")
    assert events and not any(server for _, server in events), events
    posts = []
    page.on("request", lambda r: posts.append(json.loads(r.post_data or "{}").get("fn_index"))
            if r.method == "POST" else None)
    box = page.locator("#score-t input[type=number]").first
    box.fill("63")
    box.press("Enter")
    _wait_t(page, "#score-canvas", 63)
    page.wait_for_timeout(300)
    assert not set(posts) & {i for i, _ in events}, posts
    assert page.evaluate("document.querySelector('#score-canvas').toDataURL()") != before
