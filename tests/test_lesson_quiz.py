"""lessons/quiz.py: the quiz bank parses in both languages, and the handlers score, navigate and link correctly."""
import gradio as gr
import pytest

from lessons.i18n import LANGS, Text, tr
from lessons.quiz import (
    LETTERS,
    TABS,
    build,
    check_mc,
    go,
    new_state,
    parse_quiz,
    parse_text,
    render,
    restart,
    reveal_open,
    tab_link,
)

STATE, PROGRESS, QUESTION, RADIO, CHECK, BOX, SHOW, FEEDBACK = range(8)


def at(index: int) -> dict:
    return {"index": index, "answers": {}}


def first(kind: str, lang: str = "en") -> int:
    return next(i for i, q in enumerate(parse_quiz(lang)) if q.kind == kind)


@pytest.mark.parametrize("lang", LANGS)
def test_bank_parses(lang):
    qs = parse_quiz(lang)
    assert len(qs) >= 20
    assert {q.kind for q in qs} == {"mc", "open"}
    for q in qs:
        assert q.tab in TABS and q.question and q.explanation
        if q.kind == "mc":
            assert 2 <= len(q.options) <= len(LETTERS) and 0 <= q.correct < len(q.options)
        else:
            assert q.options == () and q.correct is None


def test_languages_match():
    en, zh = parse_quiz("en"), parse_quiz("zh")
    assert [(q.id, q.kind, q.tab, q.correct, len(q.options)) for q in en] == \
           [(q.id, q.kind, q.tab, q.correct, len(q.options)) for q in zh]
    assert len({q.id for q in en}) == len(en)


def test_full_score_and_one_mistake():
    qs = parse_quiz("en")
    mc = [i for i, q in enumerate(qs) if q.kind == "mc"]
    state = new_state()
    for i in mc:
        state["index"] = i
        out = check_mc(state, qs[i].correct, "en")
        state = out[STATE]
        assert tr("quiz_correct") in out[FEEDBACK]
    assert f"{len(mc)} / {len(mc)}" in render(state)[PROGRESS]

    wrong = (qs[mc[0]].correct + 1) % len(qs[mc[0]].options)
    state = check_mc(at(mc[0]), wrong, "en")[STATE]
    state["index"] = mc[1]
    out = check_mc(state, LETTERS[qs[mc[1]].correct], "en")                  # answered by letter
    assert "1 / 2" in out[PROGRESS]
    assert "❌" in check_mc(at(mc[0]), wrong)[FEEDBACK]


def test_first_answer_counts_and_input_forms():
    q = parse_quiz("en")[first("mc")]
    state = check_mc(at(first("mc")), q.options[q.correct])[STATE]           # the option's text
    assert state["answers"][q.id]["correct"]
    again = check_mc(state, (q.correct + 1) % len(q.options))               # a second answer is ignored
    assert again[STATE]["answers"][q.id]["correct"] and not again[CHECK]["visible"]
    assert check_mc(at(first("mc")), str(q.correct))[STATE]["answers"][q.id]["choice"] == q.correct


@pytest.mark.parametrize("bad", [99, -1, "Z", "not an option", 1.5, None, ""])
def test_bad_choice_is_a_clear_error(bad):
    with pytest.raises(gr.Error):
        check_mc(at(first("mc")), bad, "en")


def test_wrong_kind_and_bad_step():
    with pytest.raises(gr.Error):
        check_mc(at(first("open")), 0)
    with pytest.raises(gr.Error):
        reveal_open(at(first("mc")))
    with pytest.raises(gr.Error):
        go(new_state(), "next")


def test_navigation_wraps_and_progress():
    n = len(parse_quiz("en"))
    assert go(new_state(), -1)[STATE]["index"] == n - 1
    assert go(at(n - 1), 1)[STATE]["index"] == 0
    out = go(at(1), 1)
    assert out[STATE]["index"] == 2 and f"Question 3 / {n}" in out[PROGRESS]
    assert go({"index": 10 * n + 3, "answers": "junk"}, 0)[STATE] == at(3)          # a damaged state is repaired
    assert render(None)[STATE] == new_state()


def test_open_question_reveals_model_answer():
    i = first("open")
    q = parse_quiz("en")[i]
    before = render(at(i))
    assert before[SHOW]["visible"] and not before[RADIO]["visible"] and before[FEEDBACK] == ""
    assert tr("open_hint") in before[QUESTION]
    out = reveal_open(at(i), "en", "my attempt")
    assert q.explanation.split("\n\n")[0] in out[FEEDBACK] and tr("quiz_model") in out[FEEDBACK]
    assert out[BOX]["value"] == "my attempt" and not out[SHOW]["visible"]
    assert "0 / 0" in out[PROGRESS]                                                  # open answers are not scored


@pytest.mark.parametrize("lang", LANGS)
def test_feedback_links_to_the_tab(lang):
    for kind in ("mc", "open"):
        i = first(kind, lang)
        q = parse_quiz(lang)[i]
        out = check_mc(at(i), q.correct, lang) if kind == "mc" else reveal_open(at(i), lang)
        link = f"(?tab={q.tab}{'&lang=zh' if lang == 'zh' else ''})"
        assert link in out[FEEDBACK]
        assert tab_link(q.tab, lang) in out[FEEDBACK]
    assert tab_link("forward") == "[→ Forward process](?tab=forward)"


def test_language_switch_keeps_question_and_score():
    i = first("mc")
    q = parse_quiz("en")[i]
    state = check_mc(at(i), q.correct, "en")[STATE]
    zh = render(state, "zh")
    assert zh[STATE] == state and parse_quiz("zh")[i].question in zh[QUESTION]
    assert tr("quiz_correct", "zh") in zh[FEEDBACK] and "1 / 1" in zh[PROGRESS]
    assert restart("zh")[STATE] == new_state()


def test_handlers_do_not_mutate_their_input():
    state = at(first("mc"))
    check_mc(state, 0)
    go(state, 1)
    assert state == at(first("mc"))


@pytest.mark.parametrize("text, msg", [
    ("## q01 | mc | forward\nQ?\n\n- [ ] a\n- [ ] b\n\n> why\n", "exactly one"),
    ("## q01 | mc | forward\nQ?\n\n- [x] a\n- [x] b\n\n> why\n", "exactly one"),
    ("## q01 | mc | forward\nQ?\n\n- [x] a\n- [ ] b\n", "explanation"),
    ("## q01 | open | forward\nQ?\n\n- [x] a\n\n> why\n", "must not have options"),
    ("## q01 | mc | nowhere\nQ?\n\n- [x] a\n- [ ] b\n\n> why\n", "unknown tab"),
    ("## q01 | multiple | forward\nQ?\n", "bad question header"),
    ("## q01 | open | forward\n\n> why\n", "empty question"),
    ("## q01 | open | forward\nQ?\n> a\n## q01 | open | forward\nQ?\n> b\n", "duplicate"),
    ("# just a title\n", "no questions"),
])
def test_malformed_bank_raises(text, msg):
    with pytest.raises(ValueError, match=msg):
        parse_text(text)


def test_build_wires_the_tab():
    with gr.Blocks():
        lang = gr.State("en")
        with gr.Tab("quiz"):
            parts = build(Text("en"), lang=lang)
    inputs, outputs = parts["on_lang_io"]
    assert inputs[1] is lang and len(outputs) == len(render(new_state()))
    assert parts["on_lang"](new_state(), "zh")[QUESTION] == render(new_state(), "zh")[QUESTION]
