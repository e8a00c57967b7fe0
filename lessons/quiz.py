"""Tab 6 · Quiz: interview questions from lessons/quiz.{lang}.md, one at a time, each linked to the tab that shows it.

State (one `gr.State` per browser session) is a plain dict `{"index": int, "answers": {qid: {...}}}` keyed by
question id, so switching language keeps the question, the answers and the score.
Multiple-choice options are rendered in the question Markdown (so their LaTeX shows) and picked by letter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import gradio as gr

from .common import LATEX
from .i18n import HERE, LANGS, Text, tr

TABS = ("forward", "posterior", "reverse", "training", "latent")   # tabs a question may point at (`tab` in links)
LETTERS = "ABCDEFGH"
HEADER = re.compile(r"^##\s+(q\d+)\s*\|\s*(mc|open)\s*\|\s*([a-z_]+)\s*$")
OPTION = re.compile(r"^- \[([ xX])\] (.+)$")


@dataclass(frozen=True)
class Question:
    id: str
    kind: str                  # "mc" or "open"
    tab: str                   # one of TABS
    question: str              # Markdown with LaTeX
    options: tuple[str, ...]   # empty for open questions
    correct: int | None        # index into options; None for open questions
    explanation: str           # Markdown: why (mc) or the model answer (open)


def parse_text(text: str, source: str = "<quiz>") -> list[Question]:
    """Parse a quiz bank: blocks '## qNN | mc|open | tab', question, '- [ ] / - [x]' options, '> ' explanation."""
    blocks: list[tuple[int, re.Match, list[str]]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("## "):
            m = HEADER.match(line.strip())
            if not m:
                raise ValueError(f"{source}:{n}: bad question header {line!r}; expected '## qNN | mc|open | tab'")
            blocks.append((n, m, []))
        elif blocks:
            blocks[-1][2].append(line)
    if not blocks:
        raise ValueError(f"{source}: no questions found")
    out, seen = [], set()
    for n, m, lines in blocks:
        qid, kind, tab = m.groups()
        where = f"{source}:{n} ({qid})"
        if qid in seen:
            raise ValueError(f"{where}: duplicate question id")
        if tab not in TABS:
            raise ValueError(f"{where}: unknown tab {tab!r}; choose one of {', '.join(TABS)}")
        seen.add(qid)
        question, options, marks, expl = [], [], [], []
        for line in lines:
            o = OPTION.match(line)
            if line.startswith(">"):
                expl.append(line[1:].strip())
            elif o:
                if expl:
                    raise ValueError(f"{where}: option after the explanation: {line!r}")
                options.append(o.group(2).strip())
                marks.append(o.group(1) != " ")
            elif line.strip() and (options or expl):
                raise ValueError(f"{where}: unexpected text after the options: {line!r}")
            elif not options and not expl:
                question.append(line)
        body = "\n".join(question).strip()
        if not body:
            raise ValueError(f"{where}: empty question")
        if not any(expl):
            raise ValueError(f"{where}: no explanation ('> ' lines)")
        if kind == "mc":
            if not 2 <= len(options) <= len(LETTERS):
                raise ValueError(f"{where}: a multiple-choice question needs 2 to {len(LETTERS)} options")
            if sum(marks) != 1:
                raise ValueError(f"{where}: a multiple-choice question needs exactly one '- [x]', found {sum(marks)}")
        elif options:
            raise ValueError(f"{where}: an open question must not have options")
        explanation = "\n\n".join(e for e in expl if e)
        out.append(Question(qid, kind, tab, body, tuple(options), marks.index(True) if kind == "mc" else None,
                            explanation))
    return out


@lru_cache(maxsize=None)
def parse_quiz(lang: str = "en") -> list[Question]:
    """The questions of lessons/quiz.<lang>.md (cached; do not mutate the list)."""
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; choose one of {', '.join(LANGS)}")
    path = HERE / f"quiz.{lang}.md"
    return parse_text(path.read_text(encoding="utf-8"), path.name)


# ---------------------------------------------------------------- state and rendering (pure)

def new_state() -> dict:
    return {"index": 0, "answers": {}}


def _lang(lang) -> str:
    return lang if lang in LANGS else "en"


def _state(state) -> dict:
    """A fresh copy of `state`, repaired if it is missing or odd (never shared between calls)."""
    n = len(parse_quiz("en"))
    if not isinstance(state, dict):
        return new_state()
    i = state.get("index", 0)
    answers = state.get("answers")
    return {"index": i % n if isinstance(i, int) else 0,
            "answers": {k: dict(v) for k, v in answers.items()} if isinstance(answers, dict) else {}}


def score(state) -> tuple[int, int]:
    """(correct, answered) over the multiple-choice questions."""
    mc = [a for a in _state(state)["answers"].values() if "choice" in a]
    return sum(a["correct"] for a in mc), len(mc)


def tab_link(tab: str, lang: str = "en") -> str:
    """A relative deep link to a tab, e.g. '[→ Forward process](?tab=forward)'; the app reads `tab` and `lang`."""
    name = tr(f"tab.{tab}", lang).split(" · ", 1)[-1]
    return f"[→ {name}](?tab={tab}{'' if lang == 'en' else '&lang=' + lang})"


def feedback(q: Question, answer: dict | None, lang: str) -> str:
    if not answer:
        return ""
    link = f"{tr('quiz_see', lang)}{tr('colon', lang)}{tab_link(q.tab, lang)}"
    if q.kind == "open":
        return f"**{tr('quiz_model', lang)}**\n\n{q.explanation}\n\n{link}"
    verdict = tr("quiz_correct", lang) if answer["correct"] else tr("quiz_wrong", lang).format(answer=LETTERS[q.correct])
    return f"{verdict}\n\n**{tr('quiz_why', lang)}{tr('colon', lang).strip()}** {q.explanation}\n\n{link}"


def question_markdown(q: Question, answer: dict | None, lang: str) -> str:
    if q.kind == "open":
        return f"*{tr('open_hint', lang)}*\n\n{q.question}"
    lines = []
    for k, opt in enumerate(q.options):
        mark = "" if not answer else " ✅" if k == q.correct else " ❌" if k == answer["choice"] else ""
        lines.append(f"- **{LETTERS[k]}.** {opt}{mark}")
    return q.question + "\n\n" + "\n".join(lines)


def render(state, lang: str = "en") -> tuple:
    """-> (state, progress, question, choices radio, check button, answer box, show-answer button, feedback)."""
    state, lang = _state(state), _lang(lang)
    qs = parse_quiz(lang)
    q = qs[state["index"]]
    ans = state["answers"].get(q.id)
    mc = q.kind == "mc"
    correct, answered = score(state)
    progress = (f"**{tr('quiz_q', lang)} {state['index'] + 1} / {len(qs)}** · {tr('score', lang)}{tr('colon', lang)}"
                f"{correct} / {answered} {tr('quiz_score_note', lang)}")
    return (state, progress, question_markdown(q, ans, lang),
            gr.update(choices=[(LETTERS[k], k) for k in range(len(q.options))], visible=mc, interactive=not ans,
                      value=ans["choice"] if mc and ans else None),
            gr.update(visible=mc and not ans),
            gr.update(visible=not mc, value=(ans or {}).get("text", "")),
            gr.update(visible=not mc and not ans),
            feedback(q, ans, lang))


# ---------------------------------------------------------------- handlers (pure: state in, render out)

def _choice_index(q: Question, choice, lang: str) -> int:
    """An option index from an int, a digit string, a letter ('B') or the option's full text."""
    if choice is None or choice == "":
        raise gr.Error(tr("quiz_pick", lang))
    if isinstance(choice, str):
        c = choice.strip()
        if c in q.options:
            return q.options.index(c)
        if len(c) == 1 and c.upper() in LETTERS[:len(q.options)]:
            return LETTERS.index(c.upper())
        if not c.lstrip("-").isdigit():
            raise gr.Error(f"unknown option {choice!r} for {q.id}; choose one of "
                           f"{', '.join(LETTERS[:len(q.options)])}")
        choice = int(c)
    if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < len(q.options):
        raise gr.Error(f"option {choice!r} out of range for {q.id}: it has {len(q.options)} options "
                       f"(0 to {len(q.options) - 1})")
    return choice


def check_mc(state, choice, lang: str = "en") -> tuple:
    """Record the answer to the current multiple-choice question (the first answer counts) and render."""
    state, lang = _state(state), _lang(lang)
    q = parse_quiz(lang)[state["index"]]
    if q.kind != "mc":
        raise gr.Error(f"{q.id} is an open question: reveal its model answer instead")
    k = _choice_index(q, choice, lang)
    state["answers"].setdefault(q.id, {"choice": k, "correct": k == q.correct})
    return render(state, lang)


def reveal_open(state, lang: str = "en", answer: str | None = "") -> tuple:
    """Show the model answer of the current open question, keeping what the learner wrote."""
    state, lang = _state(state), _lang(lang)
    q = parse_quiz(lang)[state["index"]]
    if q.kind != "open":
        raise gr.Error(f"{q.id} is a multiple-choice question: pick an option and check it")
    state["answers"][q.id] = {"text": str(answer or "")[:5000]}
    return render(state, lang)


def go(state, delta, lang: str = "en") -> tuple:
    """Move `delta` questions forward (negative: back); wraps around at both ends."""
    state, lang = _state(state), _lang(lang)
    if isinstance(delta, bool) or not isinstance(delta, int):
        raise gr.Error(f"step must be a whole number, got {delta!r}")
    state["index"] = (state["index"] + delta) % len(parse_quiz(lang))
    return render(state, lang)


def restart(lang: str = "en") -> tuple:
    return render(new_state(), lang)


# ---------------------------------------------------------------- layout

def _kwargs(update: dict) -> dict:
    return {k: v for k, v in update.items() if k != "__type__"}


def build(text: Text, lang=None) -> dict:
    """Lay out the tab. `lang`: the app's component (a gr.State) holding "en"/"zh"; without it the tab keeps its
    own, and `on_lang` (chain it after the language switch, with `on_lang_io`) writes the new language into it."""
    own_lang = lang is None
    if own_lang:
        lang = gr.State(text.lang)
    first = render(new_state(), text.lang)
    state = gr.State(first[0])
    progress = gr.Markdown(first[1])
    question = gr.Markdown(first[2], latex_delimiters=LATEX, elem_id="quiz-question")
    radio = text.reg(gr.Radio(label=text("quiz_choice"), **_kwargs(first[3])), label="quiz_choice")
    box = text.reg(gr.Textbox(label=text("your_answer"), lines=4, max_length=5000, **_kwargs(first[5])),
                   label="your_answer")
    with gr.Row():
        check = text.reg(gr.Button(text("check"), variant="primary", **_kwargs(first[4])), value="check")
        show = text.reg(gr.Button(text("show_answer"), variant="primary", **_kwargs(first[6])), value="show_answer")
    fb = gr.Markdown(first[7], latex_delimiters=LATEX, elem_id="quiz-feedback")
    with gr.Row():
        prev = text.reg(gr.Button(text("prev")), value="prev")
        nxt = text.reg(gr.Button(text("next")), value="next")
        again = text.reg(gr.Button(text("restart"), variant="secondary"), value="restart")

    outs = [state, progress, question, radio, check, box, show, fb]
    ev = dict(show_progress="hidden", api_visibility="private")
    check.click(check_mc, [state, radio, lang], outs, **ev)
    show.click(reveal_open, [state, lang, box], outs, **ev)
    prev.click(lambda s, l: go(s, -1, l), [state, lang], outs, **ev)
    nxt.click(lambda s, l: go(s, 1, l), [state, lang], outs, **ev)
    again.click(restart, [lang], outs, **ev)

    if own_lang:
        def on_lang(s, l):
            return (*render(s, l), _lang(l))
        on_lang_io = ([state, lang], outs + [lang])
    else:
        on_lang, on_lang_io = render, ([state, lang], outs)
    return dict(state=state, lang=lang, on_lang=on_lang, on_lang_io=on_lang_io, refresh=[(render, [state, lang], outs)])
