"""Rendered Markdown in the real browser: what the annotator sees of a response, that nothing in
it runs or loads from elsewhere, and that degenerate responses keep the page usable."""

from playwright.sync_api import expect

from annotate.rendering import render_markdown
from tests.test_rendering import PATHOLOGICAL

from .conftest import (
    PASSWORD,
    annotation_of,
    current_assignment,
    log_in,
    make_project,
    open_annotate,
    wait_for_work,
)

RICH = """Here are the steps:
1. Preheat
2. Mix
   - flour
   - sugar

Roses are red,
Violets are blue.

| n | name |
|--:|------|
| 1 | one |

~~old~~ new

```python
def f(x):
    return x
```

Inline \\(x^2 + y_1\\) and $a_1 * b_2 * c$.

$$
\\sum_{i=1}^n i
$$

<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> <b>not bold</b>

![a cat](http://203.0.113.9/cat.png) ![here](/projects/other/annotate/)"""


def watch_requests(page, base_url: str) -> list[str]:
    """Every request of the page that is not to the live server: recorded, and aborted."""
    outside: list[str] = []

    def route(route):
        url = route.request.url
        if url.startswith(base_url) or url.startswith("data:"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.context.route("**/*", route)
    page.on("request", lambda r: None if r.url.startswith(base_url) else outside.append(r.url))
    return outside


def test_markdown_renders_as_written_and_nothing_runs_or_loads(
    page, live_server, screenshot, annotator
):
    outside = watch_requests(page, live_server.url)
    project = make_project("pairwise", annotator, [[RICH, "Plain."]])
    project.guidelines = "Look at ![the chart](https://img.example.net/chart.png) first."
    project.save()
    open_annotate(page, project, annotator)
    # The pair is shown in a random order: the letter of the rich response.
    letter = page.locator('[data-response="r1"]').get_attribute("data-letter")
    a = page.get_by_test_id(f"rendered-{letter}")

    # A list after a single newline; nested lists; line breaks kept.
    expect(a.locator("p", has_text="Here are the steps:")).to_have_count(1)
    expect(a.locator("ol > li")).to_have_count(2)
    expect(a.locator("ol > li ul > li")).to_have_text(["flour", "sugar"])
    assert a.locator("p", has_text="Roses").inner_text() == "Roses are red,\nViolets are blue."
    # Tables, strikethrough, highlighted code.
    expect(a.locator("table th")).to_have_text(["n", "name"])
    expect(a.locator("s")).to_have_text("old")
    expect(a.locator("pre code.language-python .k")).to_have_text(["def", "return"])
    # Math kept as written (the element's title) and typeset by the vendored KaTeX.
    math = a.locator(".math")
    assert math.evaluate_all("m => m.map(e => e.title)") == [
        "\\(x^2 + y_1\\)",
        "$a_1 * b_2 * c$",
        "$$\n\\sum_{i=1}^n i\n$$",
    ]
    expect(a.locator(".math .katex")).to_have_count(3)
    expect(a.locator("div.math .katex-display")).to_have_count(1)
    # Raw HTML is text; nothing ran; no image element, placeholders name the host.
    expect(a).to_contain_text('<script>window.pwned = 1</script><img src=x onerror="window.')
    expect(a).to_contain_text("<b>not bold</b>")
    assert page.evaluate("window.pwned") is None
    expect(page.locator("img")).to_have_count(0)
    expect(a.locator(".image-blocked")).to_have_text(
        [
            "[image from host 203.0.113.9, not loaded: a cat]",
            "[image from a relative address, not loaded: here]",
        ]
    )
    expect(page.get_by_test_id("guidelines")).to_contain_text(
        "[image from host img.example.net, not loaded: the chart]"
    )

    screenshot("rendered")
    # The raw text toggle shows the response exactly as stored, and back.
    raw = page.get_by_test_id(f"raw-text-{letter}")
    expect(raw).to_be_hidden()
    page.get_by_test_id(f"raw-toggle-{letter}").check()
    expect(raw).to_be_visible()
    expect(a).to_be_hidden()
    assert raw.text_content() == RICH
    page.get_by_test_id(f"raw-toggle-{letter}").uncheck()
    expect(a).to_be_visible()

    assert outside == []


def test_a_1_mb_single_line_response_keeps_the_page_usable(page, screenshot, annotator):
    """And the answer stays at hand: a sticky bar that says what is chosen, cards that choose."""
    line = "word" * 262_144  # 1 MB, no space: one unbreakable word
    code = "```\n" + "x = 1; " * 3_000 + "\n```"  # one long line of code
    project = make_project("pairwise", annotator, [[line, code]])
    # Rendered ahead (the cache the live server shares), as bench/page.py does.
    for text in (line, code):
        render_markdown(text)
    log_in(page, annotator.username, PASSWORD)
    page.goto(f"/projects/{project.slug}/annotate/")  # load time: bench/page.py
    first = wait_for_work(page)
    page.get_by_test_id("choice-A").check()

    # Nothing is wider than the page: the long word wraps, the code line wraps in its box.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280
    for letter in "AB":
        box = page.get_by_test_id(f"response-{letter}").bounding_box()
        assert box["x"] + box["width"] <= 1280

    # The side panel folds away: the responses take its width.
    width = page.get_by_test_id("response-A").bounding_box()["width"]
    page.get_by_test_id("side-toggle").uncheck()
    expect(page.get_by_test_id("progress")).to_be_hidden()
    assert page.get_by_test_id("response-A").bounding_box()["width"] > width + 100

    # The answer bar is on screen; a click on a response chooses it, and the bar says so.
    bar = page.get_by_test_id("answer-bar").bounding_box()
    assert bar["y"] >= 0 and bar["y"] + bar["height"] <= 900
    expect(page.get_by_test_id("current-choice")).to_have_text("Your answer: A is better")
    page.get_by_test_id("response-B").locator("h3").click()
    expect(page.get_by_test_id("choice-B")).to_be_checked()
    page.keyboard.press("m")
    expect(page.get_by_test_id("current-choice")).to_have_text(
        "Your answer: B is better, much better"
    )
    screenshot("answered")
    assignment = current_assignment(page)
    page.keyboard.press("Enter")
    wait_for_work(page, first)
    shown_b = assignment.order[1]
    assert annotation_of(assignment).label["choice"] == ("A" if shown_b == "r1" else "B")


def test_pathological_responses_load_and_can_be_answered(page, annotator, live_server):
    """Each of the pathological set (issue 15) as a response: the page answers (never a 500),
    shows a form, and the annotator can answer and go on. How long the page takes is measured
    in bench/page.py, the render time in bench/render.py: a timed test fails on a loaded CI
    machine, not on a slow page."""
    texts = list(PATHOLOGICAL.values())
    pairs = [[texts[i], texts[(i + 1) % len(texts)]] for i in range(0, len(texts), 2)]
    project = make_project("pairwise", annotator, pairs)
    for text in texts:
        render_markdown(text)
    outside = watch_requests(page, live_server.url)
    log_in(page, annotator.username, PASSWORD)
    for _ in pairs:  # each page load shows the next pair: the last one's lease is answered
        response = page.goto(f"/projects/{project.slug}/annotate/")
        assert response.status == 200
        shown = wait_for_work(page)
        page.get_by_test_id("choice-A").check()
        page.keyboard.press("Enter")
        after = wait_for_work(page, shown)
    assert after == ""  # every pair answered
    assert outside == []
