"""lessons/quiz.py: the quiz bank parses in both languages, and the handlers score, navigate and link correctly."""
import re
import unicodedata

import gradio as gr
import pytest

from lessons.i18n import HERE, LANGS, Text, tr
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
    name = tr("tab.forward").split(" · ", 1)[-1]                                   # "1 · Forward ..." -> "Forward ..."
    assert tab_link("forward") == f"[→ {name}](?tab=forward)" and name.startswith("Forward")


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


# ---------------------------------------------------------------- the bank does not give its answers away
# A test-wise candidate who knows nothing about diffusion picks the longest option (or the shortest, or always
# the same letter). Each such strategy must score close to chance (1/4 with four options), which means the
# correct option must not stand out by its length or its place: the explanation belongs in the `> ` reveal.
#
# Length is measured as the learner sees it, roughly (`rendered_length`): inside $...$ a LaTeX command that draws
# a glyph (\alpha, \sim, \sqrt, \lVert) counts 1, one that only lays out (\frac, \bar, \mathrm, \big, spacing)
# counts 0, and braces, ^, _ and spaces count 0; outside maths, Markdown markers (**, `) count 0 and a Chinese
# (East Asian wide) character counts 2, as it is about twice as wide as a Latin letter. The strategy scores are
# also checked with the plain character count of the Markdown, so that the result does not hinge on this estimate.
_LAYOUT = {"frac", "tfrac", "dfrac", "bar", "tilde", "hat", "mathrm", "mathcal", "mathbb", "mathbf", "text",
           "textstyle", "displaystyle", "operatorname", "boldsymbol", "big", "Big", "bigg", "Bigg", "left", "right"}
_MATH = re.compile(r"(?<!\\)\$(.+?)(?<!\\)\$")


def _math_length(tex: str) -> int:
    tex = re.sub(r"\\[,;:! ]", "", tex)
    tex = re.sub(r"\\([A-Za-z]+)", lambda m: "" if m.group(1) in _LAYOUT else "#", tex)
    return len(re.sub(r"[{}^_\s]", "", tex))


def _text_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text.replace("**", "").replace("`", ""))


def rendered_length(markdown: str) -> int:
    """Rough width of a line of quiz Markdown as rendered, in Latin-letter units (see the note above)."""
    parts = _MATH.split(markdown)                                   # text, maths, text, maths, ..., text
    return sum(_math_length(p) if i % 2 else _text_width(p) for i, p in enumerate(parts))


def mc_questions(lang: str) -> list:
    return [q for q in parse_quiz(lang) if q.kind == "mc"]


def strategy_score(questions, pick) -> float:
    """Expected fraction right when `pick(q)` names the options a candidate would choose among at random."""
    return sum((q.correct in chosen) / len(chosen) for q in questions for chosen in [pick(q)]) / len(questions)


def extreme(measure, which):
    def pick(q):
        lengths = [measure(o) for o in q.options]
        return [k for k, n in enumerate(lengths) if n == which(lengths)]
    return pick


def test_rendered_length_ignores_markup():
    assert rendered_length("$\\frac{1}{\\sqrt{\\bar\\alpha_t}}$") == 4                      # 1, √, α, t
    assert rendered_length("**A.** `code`") == len("A. code")
    assert rendered_length("只学反向均值") == 12 and rendered_length("a $x_0$ b") == len("a x0 b")


@pytest.mark.parametrize("lang", LANGS)
def test_correct_option_is_rarely_the_longest(lang):
    """The longest option (ties included) is the right one in at most a third of the questions; chance is 1/4."""
    qs = mc_questions(lang)
    longest = [q.id for q in qs if q.correct in extreme(rendered_length, max)(q)]
    assert len(longest) <= len(qs) / 3, f"{lang}: the longest option is correct in {len(longest)} of {len(qs)}: {longest}"


@pytest.mark.parametrize("measure", [rendered_length, len], ids=["rendered", "markdown"])
@pytest.mark.parametrize("lang", LANGS)
def test_test_wise_strategies_score_near_chance(lang, measure):
    """Picking the longest option, the shortest, or always the same letter scores at most 40 %."""
    qs = mc_questions(lang)
    scores = {"longest": strategy_score(qs, extreme(measure, max)),
              "shortest": strategy_score(qs, extreme(measure, min))}
    scores.update({f"always {LETTERS[k]}": strategy_score(qs, lambda q, k=k: [k] if k < len(q.options) else range(len(q.options)))
                   for k in range(4)})
    assert max(scores.values()) <= 0.4, f"{lang}: {scores}"


@pytest.mark.parametrize("lang", LANGS)
def test_options_of_a_question_are_alike_in_length(lang):
    """Prose options (the longest at least 30 units) stay within a factor 1.6 of each other; short answers such as
    numbers and formulas are left alone. The reveal, not the option, carries the explanation."""
    for q in mc_questions(lang):
        lengths = [rendered_length(o) for o in q.options]
        if max(lengths) >= 30:
            assert max(lengths) <= 1.6 * min(lengths), f"{lang} {q.id}: option lengths {lengths}"
        assert len(q.explanation) >= 2 * len(q.options[q.correct]), f"{lang} {q.id}: the reveal explains too little"


def test_chinese_bank_typography():
    """Full-width punctuation in Chinese prose (tests/zh_text.py), and '等人' rather than 'et al.'."""
    from zh_text import half_width_punctuation, mask
    text = (HERE / "quiz.zh.md").read_text(encoding="utf-8")
    assert half_width_punctuation(text) == []
    assert "et al" not in mask(text)
