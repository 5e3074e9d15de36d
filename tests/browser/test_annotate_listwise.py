"""Listwise in the browser: rank with keys (ties allowed) and by dragging cards; the order as
shown only when confirmed; letter keys focus cards."""

from playwright.sync_api import expect

from annotate.models import Annotation

from .conftest import (
    annotation_of,
    current_assignment,
    make_project,
    open_annotate,
    tab_to,
    wait_for_work,
)


def shown_order(page) -> list[str]:
    return page.locator("[data-rank-list] > .rank-card").evaluate_all(
        "cards => cards.map(c => c.dataset.letter)"
    )


def test_listwise_ranked_with_keys_and_ties(page, screenshot, annotator):
    texts = ["Four.", "It is **4**.", "2 + 2 = 4, because two and two make four.", "Five."]
    project = make_project("listwise", annotator, [texts], config={"allow_ties": True})
    first_id = open_annotate(page, project, annotator)
    assignment = current_assignment(page)
    rid = dict(zip("ABCD", assignment.order, strict=True))  # shown letter -> response id

    # D to the top with a number key, then C up one with k, then tie C with the card above.
    tab_to(page, "rank-card-D")
    page.keyboard.press("1")
    assert shown_order(page) == ["D", "A", "B", "C"]
    tab_to(page, "rank-card-C")
    page.keyboard.press("k")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("j")
    assert shown_order(page) == ["D", "A", "C", "B"]
    expect(page.get_by_test_id("rank-card-C")).to_be_focused()
    page.keyboard.press("t")
    expect(page.get_by_test_id("tie-C")).to_be_checked()
    ranks = {letter: page.get_by_test_id(f"rank-input-{letter}").input_value() for letter in "ABCD"}
    assert ranks == {"D": "1", "A": "2", "C": "2", "B": "3"}
    screenshot("listwise-keyboard")
    page.keyboard.press("Enter")
    wait_for_work(page, first_id)
    expect(page.get_by_test_id("nothing-left")).to_be_visible()

    stored = annotation_of(assignment)
    assert stored.label == {"ranking": [rid["D"], [rid["A"], rid["C"]], rid["B"]]}
    assert stored.time_spent_ms > 0


def drag(page, letter: str, onto: str, *, below: bool) -> None:
    """Drag card `letter` with the mouse onto the top (or bottom) edge of card `onto`."""
    target = page.get_by_test_id(f"rank-card-{onto}").bounding_box()
    y = target["height"] - 4 if below else 4
    page.get_by_test_id(f"rank-card-{letter}").drag_to(
        page.get_by_test_id(f"rank-card-{onto}"), target_position={"x": 40, "y": y}
    )


def test_listwise_ranked_by_dragging(page, screenshot, annotator):
    texts = ["Paris.", "Lyon.", "The capital of France is **Paris**."]
    # Ties forbidden (they are allowed by default): the cards have no tie toggle.
    project = make_project("listwise", annotator, [texts], config={"allow_ties": False})
    first_id = open_annotate(page, project, annotator)
    assignment = current_assignment(page)
    rid = dict(zip("ABC", assignment.order, strict=True))
    expect(page.get_by_test_id("tie-A")).to_have_count(0)

    drag(page, "C", onto="A", below=False)
    assert shown_order(page) == ["C", "A", "B"]
    drag(page, "A", onto="B", below=True)
    assert shown_order(page) == ["C", "B", "A"]
    ranks = {letter: page.get_by_test_id(f"rank-input-{letter}").input_value() for letter in "ABC"}
    assert ranks == {"C": "1", "B": "2", "A": "3"}
    screenshot("listwise")
    page.get_by_test_id("submit").click()
    wait_for_work(page, first_id)

    stored = annotation_of(assignment)
    assert stored.label == {"ranking": [rid["C"], rid["B"], rid["A"]]}
    assert stored.time_spent_ms > 0


def test_listwise_order_as_shown_is_confirmed_and_letters_focus_cards(page, annotator):
    project = make_project("listwise", annotator, [["One.", "Two.", "Three."], ["Again.", "More."]])
    first_id = open_annotate(page, project, annotator)
    assignment = current_assignment(page)

    # Enter on the untouched order: refused, nothing stored.
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("error-ranking")).to_contain_text("Move at least one card")
    assert not Annotation.objects.exists()
    # "o" says the order is right; Enter stores it as shown.
    page.keyboard.press("o")
    expect(page.get_by_test_id("order-confirmed")).to_be_checked()
    page.keyboard.press("Enter")
    second_id = wait_for_work(page, first_id)
    assert annotation_of(assignment).label == {"ranking": assignment.order}

    # A letter focuses its card, where the keys move it: b then 1 puts B first.
    second = current_assignment(page)
    page.keyboard.press("b")
    expect(page.get_by_test_id("rank-card-B")).to_be_focused()
    page.keyboard.press("1")
    assert shown_order(page) == ["B", "A"]
    page.keyboard.press("Enter")
    wait_for_work(page, second_id)
    assert annotation_of(second).label == {"ranking": list(reversed(second.order))}
