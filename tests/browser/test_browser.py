"""A real browser (Debian's Chromium, driven by Playwright) clicking through the real page."""
import os
import shutil
from pathlib import Path

import pytest

from lessons import reverse

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


def test_every_tab_opens_and_the_t_slider_changes_the_image(page, app_url):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(app_url)
    page.get_by_role("tab", name="1 · Forward process").wait_for()
    page.wait_for_function("document.querySelector('#forward-formula').innerText.includes('0.')", timeout=30_000)
    page.wait_for_timeout(3000)                                  # let the first render finish
    xt_before = page.locator("#forward-xt img").get_attribute("src")
    slider_box = page.get_by_label("number input for Timestep t").first
    slider_box.fill("800")
    slider_box.press("Enter")
    page.wait_for_function("document.querySelector('#forward-formula').innerText.includes('800')", timeout=30_000)
    page.wait_for_timeout(1000)
    assert "800" in page.locator("#forward-formula").inner_text()
    assert page.locator("#forward-xt img").get_attribute("src") != xt_before
    page.screenshot(path=str(SHOTS / "forward.png"), full_page=True)
    for name in ("2 · Posterior", "3 · Reverse process", "4 · Training objective", "5 · Quiz"):
        page.get_by_role("tab", name=name).click()
        page.wait_for_timeout(600)
        page.screenshot(path=str(SHOTS / f"{name.split(' · ')[1].replace(' ', '-')}.png"), full_page=True)


def test_chinese_and_a_streamed_generation(page, app_url):
    page.goto(app_url + "?tab=reverse&steps=10&n=4&label=Sneaker&seed=7")
    # before any run the tab shows the snow x_T of the linked seed that Generate will start from
    page.wait_for_function("(document.querySelector('#reverse-progress')?.innerText || '').includes('seed 7')",
                           timeout=30_000)
    page.get_by_text("中文").click()
    page.get_by_role("tab", name="3 · 反向过程").wait_for(timeout=15_000)
    assert page.get_by_role("tab", name="1 · 前向过程").is_visible()
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
    page.wait_for_function("document.querySelector('#posterior-formula') && "
                           "document.querySelector('#posterior-formula').innerText.includes('321')", timeout=30_000)
    assert page.get_by_role("tab", name="2 · Posterior", selected=True).is_visible()
    page.goto(app_url + "?tab=reverse&label=Bag&guidance=5&guide_until=999&steps=20&model=fashion-mnist-large")
    page.get_by_role("tab", name="3 · Reverse process", selected=True).wait_for(timeout=15_000)
    until = "document.querySelector('input[aria-label=\"number input for only while t ≤\"]')?.value"
    page.wait_for_function(f"{until} === '999'", timeout=15_000)
    assert page.get_by_label("number input for Guidance scale s").input_value() == "5"
    assert page.get_by_label("number input for DDIM steps").input_value() == "20"
    page.wait_for_function("document.querySelector('input[type=radio][value=\"fashion-mnist-large\"]')"
                           ".getAttribute('aria-checked') === 'true'", timeout=15_000)
    # choosing the other model by hand moves "only while t <=" to that model's own default
    page.locator('input[type=radio][value="fashion-mnist"]').click()
    page.wait_for_function(f"{until} === '{reverse.default_guidance_until('fashion-mnist')}'", timeout=15_000)


def test_stop_cancels_a_running_generation(page, app_url):
    page.goto(app_url + "?tab=reverse&sampler=ddpm&n=12")
    page.get_by_role("tab", name="3 · Reverse process", selected=True).wait_for(timeout=15_000)
    # click only once the deep link has been applied: a click during the page's start-up can be lost
    page.wait_for_function("document.querySelector('input[aria-label=\"number input for Images\"]')"
                           "?.value === '12'", timeout=30_000)
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Generate", exact=True).click()
    progress = page.locator("#reverse-progress")
    page.wait_for_function("document.querySelector('#reverse-progress').innerText.includes('step')", timeout=60_000)
    page.get_by_role("button", name="Stop", exact=True).click()
    page.wait_for_timeout(1500)
    stopped_at = progress.inner_text()
    page.wait_for_timeout(2000)
    assert progress.inner_text() == stopped_at and "1000/1000" not in stopped_at
