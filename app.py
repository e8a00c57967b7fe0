"""Diffusion, hands on: the Gradio app. Assembles the tabs; no maths and no lesson prose live here.

    python app.py        # serves on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)

Deep links: ?tab=posterior&t=500&schedule=cosine&lang=zh ... (see README).
"""
from __future__ import annotations

import os
from urllib.parse import urlencode

import gradio as gr

from lessons import forward, latent, posterior, quiz, reverse, stage, training
from lessons.common import example_names
from lessons.i18n import LANGS, Text, lesson, tr

TABS = {"forward": forward, "posterior": posterior, "reverse": reverse, "training": training, "latent": latent,
        "quiz": quiz}
# which URL parameters each tab understands (name -> the key of the component in the tab's build() dict)
PARAMS = {
    "forward": ["image", "t", "schedule", "timesteps", "beta_start", "beta_end"],
    "posterior": ["image", "t", "schedule", "timesteps", "beta_start", "beta_end"],
    "reverse": ["label", "sampler", "steps", "eta", "guidance", "guide_until", "seed", "n", "model"],
    "training": ["toy"],
    "latent": ["image", "t", "prompt", "negative", "guidance", "steps", "seed"],
    "quiz": [],
}
COPY_JS = """(q) => { const u = window.location.origin + window.location.pathname + (q ? '?' + q : '');
  if (navigator.clipboard) { navigator.clipboard.writeText(u).catch(() => {}); } return u; }"""


def parse_query(query: dict, widgets: dict) -> tuple[str, str, dict]:
    """URL query -> (tab, lang, {component: value}) for the values that make sense; others are ignored."""
    tab = query.get("tab", "forward")
    tab = tab if tab in TABS else "forward"
    lang = query.get("lang", "en")
    lang = lang if lang in LANGS else "en"
    values = {}
    for key in PARAMS[tab]:
        if key in query and key in widgets[tab]:
            raw = query[key]
            comp = widgets[tab][key]
            try:
                if isinstance(comp, (gr.Slider, gr.Number)):
                    v = float(raw)
                    v = int(v) if v == int(v) else v
                else:
                    v = raw
                    if key == "image" and v not in example_names():
                        continue
                    if isinstance(comp, (gr.Radio, gr.Dropdown)) and v not in [c[1] for c in comp.choices]:
                        continue
            except ValueError:
                continue
            values[comp] = v
    return tab, lang, values


def only_on(tab: str, fn):
    """`fn`, run only when the page opened on `tab` (its first argument: the current tab); else nothing changes."""
    def run(current, *args):
        return fn(*args) if current == tab else gr.skip()
    return run


def build_app() -> gr.Blocks:
    with gr.Blocks(title=tr("title")) as demo:
        lang_state, current_tab = gr.State("en"), gr.State("forward")
        text = Text("en", state=lang_state)
        with gr.Row(elem_id="header", equal_height=True):
            text.reg_fn(gr.Markdown(f"# {tr('title')}"), lambda lang: dict(value=f"# {tr('title', lang)}"))
            lang_radio = gr.Radio([("English", "en"), ("中文", "zh")], value="en", show_label=False, scale=0, container=False,
                                  min_width=180, elem_id="lang")
        # the intro once, folded: every tab opens on its own stage
        with text.reg(gr.Accordion(tr("about"), open=False, elem_id="intro"), label="about"):
            text.reg(gr.Markdown(lesson("intro")), value="lesson:intro")
        widgets, tab_of = {}, {}
        # "wrap": on a phone every tab stays one tap away (no overflow menu), including tabs added later
        with gr.Tabs(selected="forward", overflow_behavior="wrap") as tabs:
            for name, module in TABS.items():
                with text.reg(gr.Tab(tr(f"tab.{name}"), id=name, elem_id=f"tab-{name}"), label=f"tab.{name}") as tab:
                    # the quiz re-renders its question in the new language, so it reads the app's language
                    widgets[name] = module.build(text, lang=lang_state) if name == "quiz" else module.build(text)
                tab.select(lambda n=name: n, None, current_tab, queue=False, api_visibility="private")
                tab_of[name] = tab
        with gr.Row():
            link_btn = text.reg(gr.Button(tr("copy_link"), size="sm", scale=0, min_width=220), value="copy_link")
            link_box = text.reg(gr.Textbox(show_label=False, placeholder=tr("link"), interactive=False,
                                           elem_id="view-link"), placeholder="link")

        # ---- language switch: every registered component follows; the quiz re-renders its question
        switch = lang_radio.change(lambda lang: [lang] + text.updates(lang), lang_radio,
                                   [lang_state] + text.components, queue=False, api_visibility="private")
        for parts in widgets.values():
            if "on_lang" in parts:
                switch.then(parts["on_lang"], *parts["on_lang_io"], api_visibility="private")

        # ---- deep links in: ?tab=...&lang=...&<tab's parameters>
        link_inputs = {name: [widgets[name][k] for k in keys] for name, keys in PARAMS.items()}

        def apply_query(request: gr.Request):
            tab, lang, values = parse_query(dict(request.query_params) if request else {}, widgets)
            updates = {tabs: gr.Tabs(selected=tab), lang_radio: gr.update(value=lang), current_tab: tab}
            updates.update({comp: gr.update(value=v) for comp, v in values.items()})
            return updates
        all_params = [c for comps in link_inputs.values() for c in comps]
        load = demo.load(apply_query, None, [tabs, lang_radio, current_tab] + all_params, queue=False,
                         api_visibility="private")
        for parts in widgets.values():                        # first render of the live views
            for fn, inputs, outputs in parts.get("refresh", []):
                load = load.then(fn, inputs, outputs, show_progress="hidden", api_visibility="private")
        # views rendered only once their tab is opened (by a click, or by a deep link to that tab)
        for name, parts in widgets.items():
            for fn, inputs, outputs in parts.get("on_select", []):
                tab_of[name].select(fn, inputs, outputs, show_progress="hidden", api_visibility="private")
                load = load.then(only_on(name, fn), [current_tab] + inputs, outputs, show_progress="hidden",
                                 api_visibility="private")

        # ---- deep links out: the current tab and its settings as a URL, copied to the clipboard
        def make_link(tab: str, lang: str, *vals):
            by_tab, i = {}, 0
            for name, keys in PARAMS.items():
                by_tab[name] = dict(zip(keys, vals[i: i + len(keys)]))
                i += len(keys)
            q = {"tab": tab, **({"lang": lang} if lang != "en" else {})}
            q.update({k: v for k, v in by_tab.get(tab, {}).items() if v is not None})
            return urlencode(q)
        link_btn.click(make_link, [current_tab, lang_state] + all_params, link_box, queue=False,
                       api_visibility="private").then(None, link_box, link_box, js=COPY_JS)
    return demo


def fewer_malloc_arenas(n: int) -> None:
    """glibc's malloc gives busy threads arenas of their own, up to 8 per core; a server with 128 worker threads
    (followers of shared runs) keeps the freed memory of many of them. n arenas bound that (DDPM_MALLOC_ARENAS;
    0 keeps glibc's default). Elsewhere than glibc this does nothing."""
    if n <= 0:
        return
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(-8, n)            # M_ARENA_MAX = -8 in glibc's malloc.h
    except (OSError, AttributeError):
        pass


def main() -> None:
    fewer_malloc_arenas(int(os.environ.get("DDPM_MALLOC_ARENAS", "2")))
    demo = build_app()
    # a queue with limits: 64 may wait; generation computes in lessons/runs.py's lanes (2 short runs and 1 long
    # at a time), and every learner who asks for the same pictures follows one shared run (lessons/reverse.py).
    # A follower waits in a worker thread, so the thread pool (Starlette's 40 by default) has room for a full
    # queue of followers besides the other tabs' handlers.
    demo.queue(max_size=64, default_concurrency_limit=4)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)), css=stage.css(), head=stage.head(),
                show_error=True, max_threads=128)


if __name__ == "__main__":
    main()
