"""Spans in the browser: offsets agree with Python for emoji, combining marks and CJK text, and
for selections on rendered Markdown (snapped to words unless Alt is held); bidi controls marked."""

import json

from playwright.sync_api import expect

from .conftest import (
    annotation_of,
    current_assignment,
    make_project,
    open_annotate,
    tab_to,
    tab_until,
    wait_for_work,
)

# Astral emoji with a skin tone, a ZWJ family, a flag, a combining accent (e + U+0301), CJK.
MIXED = "Hi 👋🏽! The family 👨‍👩‍👧‍👦 went to Cafe\u0301 東京 in 2024 🇯🇵. Done."
WRONG = "👍🏽 Lyon is the capital of France."
CJK = "CJK: 東京は日本の首都です。"

# The client rectangles of the first and last grapheme of UTF-16 units start..end of a
# response's text (its text nodes, around any <mark> already there).
GRAPHEME_ENDS = """([testid, start, end]) => {
  const box = document.querySelector(`[data-testid="${testid}"]`);
  const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
  const nodes = [];
  for (let n = walker.nextNode(), at = 0; n; at += n.length, n = walker.nextNode()) {
    nodes.push([n, at]);
  }
  const point = (offset) => {
    const [node, at] = nodes.find(([n, a]) => offset <= a + n.length);
    return [node, offset - at];
  };
  const rect = (a, b) => {
    const range = document.createRange();
    range.setStart(...point(a));
    range.setEnd(...point(b));
    return range.getBoundingClientRect();
  };
  const graphemes = Array.from(new Intl.Segmenter().segment(box.textContent))
    .filter((g) => g.index < end && g.index + g.segment.length > start);
  const first = graphemes[0], last = graphemes[graphemes.length - 1];
  const a = rect(first.index, first.index + first.segment.length);
  const b = rect(last.index, last.index + last.segment.length);
  return {x0: a.left + 1, y0: a.top + a.height / 2, x1: b.right - 1, y1: b.top + b.height / 2};
}"""


def utf16(text: str, index: int) -> int:
    return len(text[:index].encode("utf-16-le")) // 2


def drag_select(page, letter: str, text: str, words: str) -> None:
    """Select `words` in response `letter` with a mouse drag from its first to its last glyph."""
    start = text.index(words)
    box = page.evaluate(
        GRAPHEME_ENDS,
        [f"span-text-{letter}", utf16(text, start), utf16(text, start + len(words))],
    )
    page.mouse.move(box["x0"], box["y0"])
    page.mouse.down()
    page.mouse.move(box["x1"], box["y1"], steps=4)
    page.mouse.up()


def expected_span(text: str, words: str, label: str, response: str = "r1", correction=None):
    start = text.index(words)
    return {
        "response": response,
        "start": start,
        "end": start + len(words),
        "label": label,
        "correction": correction,
    }


def test_code_point_offsets_in_the_page_agree_with_python(page, annotator):
    project = make_project("spans", annotator, [[MIXED]])
    open_annotate(page, project, annotator)
    strings = [
        MIXED,
        "👋🏽",
        "👨‍👩‍👧‍👦",
        "🇯🇵",
        "e\u0301",
        "東京は日本の首都です。",
        "a𝐀b",
        "",
    ]
    got = page.evaluate(
        """strings => strings.map(s => ({
          whole: PrefhubSpans.toCodePoints(s, s.length),
          half: PrefhubSpans.toCodePoints(s, Math.floor(s.length / 2)),
          back: PrefhubSpans.toUtf16(s, Array.from(s).length),
          middle: PrefhubSpans.slice(s, 1, 3),
        }))""",
        strings,
    )
    for text, answer in zip(strings, got, strict=True):
        assert answer["whole"] == len(text), text
        assert answer["back"] == utf16(text, len(text)), text
        assert answer["middle"] == text[1:3], text
    # Positions inside MIXED: every UTF-16 offset at a code point boundary maps to Python's.
    boundaries = [utf16(MIXED, i) for i in range(len(MIXED) + 1)]
    mapped = page.evaluate(
        "([s, offsets]) => offsets.map(o => PrefhubSpans.toCodePoints(s, o))", [MIXED, boundaries]
    )
    assert mapped == list(range(len(MIXED) + 1))


def test_spans_marked_with_the_mouse(page, screenshot, annotator):
    project = make_project("spans", annotator, [[MIXED]])
    first_id = open_annotate(page, project, annotator)
    assignment = current_assignment(page)

    family, cafe, flag = "👨‍👩‍👧‍👦 went", "Cafe\u0301 東京", "🇯🇵"
    for words, tag in ((family, "unverifiable"), (cafe, "irrelevant"), (flag, "redundant")):
        drag_select(page, "A", MIXED, words)
        expect(page.get_by_test_id("span-pending")).to_contain_text("Selected")
        page.get_by_test_id(f"tag-{tag}").click()
        expect(page.get_by_test_id("span-pending")).to_contain_text(f"as {tag}")
    marked = json.loads(page.get_by_test_id("spans-json").input_value())
    assert [(s["start"], s["end"], s["text"]) for s in marked] == [
        (MIXED.index(w), MIXED.index(w) + len(w), w) for w in (family, cafe, flag)
    ]
    expect(page.get_by_test_id("span-item")).to_have_count(3)
    screenshot("spans")

    # Click the flag's highlight: its span gets the focus; its Delete button removes it.
    page.locator(".span-text mark", has_text=flag).click()
    expect(page.get_by_test_id("span-item").nth(2)).to_be_focused()
    page.get_by_test_id("span-delete-2").click()
    expect(page.get_by_test_id("span-item")).to_have_count(2)
    page.get_by_test_id("submit").click()
    wait_for_work(page, first_id)

    stored = annotation_of(assignment)
    assert stored.label == {
        "spans": [
            expected_span(MIXED, family, "unverifiable"),
            expected_span(MIXED, cafe, "irrelevant"),
        ],
        "missing": "",
        "corrected": {},
    }
    assert stored.time_spent_ms > 0


def test_spans_marked_with_the_keyboard(caret_page, screenshot, annotator):
    page = caret_page
    project = make_project("spans", annotator, [[WRONG, CJK], ["Fine as it is."]])
    first_id = open_annotate(page, project, annotator)
    assignment = current_assignment(page)
    assert assignment.order == ["r1", "r2"]

    # Tab puts the caret at the start of a response; arrows walk graphemes, Shift selects.
    tab_to(page, "span-text-A")
    page.keyboard.press("ArrowRight")  # past 👍🏽
    page.keyboard.press("ArrowRight")  # past the space
    for _ in range(4):
        page.keyboard.press("Shift+ArrowRight")
    expect(page.get_by_test_id("span-pending")).to_contain_text("“Lyon”")
    page.keyboard.press("w")
    tab_to(page, "span-text-B")
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    for _ in range(2):
        page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("i")
    marked = json.loads(page.get_by_test_id("spans-json").input_value())
    assert [(s["response"], s["start"], s["end"]) for s in marked] == [
        ("r1", WRONG.index("Lyon"), WRONG.index("Lyon") + 4),
        ("r2", CJK.index("東京"), CJK.index("東京") + 2),
    ]

    # Delete removes the focused span; a correction is typed into the other one.
    tab_until(page, "el => el.dataset.testid === 'span-item' && el.dataset.index === '1'")
    page.keyboard.press("Delete")
    expect(page.get_by_test_id("span-item")).to_have_count(1)
    tab_to(page, "span-correction-0")
    page.keyboard.type("Paris")
    page.keyboard.press("Escape")
    screenshot("spans-keyboard", on=page)
    page.keyboard.press("Enter")
    second_id = wait_for_work(page, first_id)

    stored = annotation_of(assignment)
    assert stored.label == {
        "spans": [expected_span(WRONG, "Lyon", "wrong-grounding", correction="Paris")],
        "missing": "",
        "corrected": {},
    }
    assert stored.time_spent_ms > 0

    # "No errors" is an answer of its own: Shift+N.
    second = current_assignment(page)
    page.keyboard.press("Shift+N")
    wait_for_work(page, second_id)
    expect(page.get_by_test_id("nothing-left")).to_be_visible()
    assert annotation_of(second).label == {"spans": [], "missing": "", "corrected": {}}


def test_bidi_controls_are_marked_and_reach_nothing_and_offsets_stay_exact(page, annotator):
    text = "Pay \u202eusd 01\u202c now, \u200bthen 👍🏽 more."
    project = make_project("spans", annotator, [[text]])
    first_id = open_annotate(page, project, annotator)
    assignment = current_assignment(page)
    box = page.get_by_test_id("span-text-A")
    expect(box.locator(".ctl")).to_have_count(3)
    assert box.locator(".ctl").evaluate_all("m => m.map(e => e.dataset.ctl)") == [
        "RLO",
        "PDF",
        "U+200B",
    ]
    # The override reaches nothing: "usd" reads left to right.
    x = page.evaluate(
        """el => {
          const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
          let node = walker.nextNode();
          while (!node.data.startsWith("usd")) node = walker.nextNode();
          const at = i => { const r = document.createRange(); r.setStart(node, i);
                            r.setEnd(node, i + 1); return r.getBoundingClientRect().left; };
          return [at(0), at(2)];
        }""",
        box.element_handle(),
    )
    assert x[0] < x[1]
    drag_select(page, "A", text, "then 👍🏽")
    page.keyboard.press("u")
    page.get_by_test_id("submit").click()
    wait_for_work(page, first_id)
    assert annotation_of(assignment).label["spans"] == [
        expected_span(text, "then 👍🏽", "unverifiable")
    ]


RENDERED = (
    "Steps:\n1. Add **2 cups** of flour\n2. See [the docs](https://example.org/docs) now\n\n"
    "`code & more` and *café* 👍🏽 done."
)


def drag_rendered(page, letter: str, words: str, *, alt: bool = False) -> None:
    """Drag over `words` as the page shows them (rendered), holding Alt if asked."""
    testid = f"span-text-{letter}"
    shown = page.get_by_test_id(testid).text_content()
    start = utf16(shown, shown.index(words))
    box = page.evaluate(GRAPHEME_ENDS, [testid, start, start + utf16(words, len(words))])
    if alt:
        page.keyboard.down("Alt")
    page.mouse.move(box["x0"], box["y0"])
    page.mouse.down()
    page.mouse.move(box["x1"], box["y1"], steps=4)
    page.mouse.up()
    if alt:
        page.keyboard.up("Alt")


def test_spans_on_rendered_markdown_store_source_offsets(page, annotator):
    project = make_project("spans", annotator, [[RENDERED]])
    first_id = open_annotate(page, project, annotator)
    assignment = current_assignment(page)
    box = page.get_by_test_id("span-text-A")
    expect(box.locator("ol > li")).to_have_count(2)
    expect(box.locator("strong")).to_have_text("2 cups")

    # Part of a word snaps out to whole words: "2 cu" is "2 cups" (inside **...**).
    drag_rendered(page, "A", "2 cu")
    page.keyboard.press("i")
    drag_rendered(page, "A", "the docs")  # link text, not its URL
    page.keyboard.press("u")
    drag_rendered(page, "A", "code & more")  # inline code, & escaped in the HTML
    page.keyboard.press("r")
    drag_rendered(page, "A", "caf", alt=True)  # Alt: exactly what was selected
    page.keyboard.press("w")
    expect(page.get_by_test_id("span-item")).to_have_count(4)
    # The list names no offsets.
    expect(page.get_by_test_id("span-list")).not_to_contain_text("characters")
    expect(box.locator("mark")).to_have_count(4)
    page.get_by_test_id("submit").click()
    wait_for_work(page, first_id)

    spans = annotation_of(assignment).label["spans"]
    got = [(RENDERED[s["start"] : s["end"]], s["label"]) for s in spans]
    assert got == [
        ("2 cups", "irrelevant"),
        ("the docs", "unverifiable"),
        ("code & more", "redundant"),
        ("caf", "wrong-grounding"),
    ]
    assert spans[0]["start"] == RENDERED.index("2 cups")
