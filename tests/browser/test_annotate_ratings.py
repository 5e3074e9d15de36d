"""Ratings in the browser: one Likert scale per aspect and response, by keys and by mouse."""

from playwright.sync_api import expect

from .conftest import (
    annotation_of,
    current_assignment,
    make_project,
    open_annotate,
    tab_to,
    wait_for_work,
)

ASPECTS = ["instruction_following", "truthfulness", "honesty", "helpfulness"]
TEXTS = ["Paris is the capital of France.", "I believe it is **Lyon**."]


def test_ratings_with_number_keys(page, screenshot, annotator):
    project = make_project("ratings", annotator, [TEXTS])
    first_id = open_annotate(page, project, annotator)
    assignment = current_assignment(page)
    shown = dict(zip("AB", assignment.order, strict=True))

    # A number rates the first unrated aspect and moves on: A's four, then B's four.
    keys = {"A": [4, 5, 3, 5], "B": [2, 1, 3, 2]}
    for letter in "AB":
        for score in keys[letter]:
            page.keyboard.press(str(score))
    for letter in "AB":
        for aspect, score in zip(ASPECTS, keys[letter], strict=True):
            expect(page.get_by_test_id(f"rate-{letter}-{aspect}-{score}")).to_be_checked()
    # The focused aspect takes the next number: B's helpfulness becomes 1.
    expect(page.get_by_test_id("rate-B-helpfulness-2")).to_be_focused()
    page.keyboard.press("1")
    tab_to(page, "rationale-B")
    page.keyboard.type("Names the wrong city.")
    page.keyboard.press("Escape")
    screenshot("ratings-keyboard")
    page.keyboard.press("Enter")
    wait_for_work(page, first_id)
    expect(page.get_by_test_id("nothing-left")).to_be_visible()

    stored = annotation_of(assignment)
    assert stored.label == {
        "responses": {
            shown["A"]: {"aspects": dict(zip(ASPECTS, [4, 5, 3, 5], strict=True)), "rationale": ""},
            shown["B"]: {
                "aspects": dict(zip(ASPECTS, [2, 1, 3, 1], strict=True)),
                "rationale": "Names the wrong city.",
            },
        }
    }
    assert stored.time_spent_ms > 0


def test_ratings_with_the_mouse(page, screenshot, annotator):
    project = make_project("ratings", annotator, [TEXTS])
    first_id = open_annotate(page, project, annotator)
    assignment = current_assignment(page)
    shown = dict(zip("AB", assignment.order, strict=True))

    scores = {"A": [5, 5, 4, 5], "B": [3, 1, 2, 1]}
    for letter in "AB":
        for aspect, score in zip(ASPECTS, scores[letter], strict=True):
            page.get_by_test_id(f"rate-{letter}-{aspect}-{score}").click()
    # A second click on the same scale changes the rating.
    page.get_by_test_id("rate-A-honesty-3").click()
    scores["A"][2] = 3
    screenshot("ratings")
    page.get_by_test_id("submit").click()
    wait_for_work(page, first_id)

    stored = annotation_of(assignment)
    assert stored.label == {
        "responses": {
            shown[letter]: {
                "aspects": dict(zip(ASPECTS, scores[letter], strict=True)),
                "rationale": "",
            }
            for letter in "AB"
        }
    }
    assert stored.time_spent_ms > 0


def test_ratings_form_comes_back_with_errors_for_unrated_aspects(page, annotator):
    project = make_project("ratings", annotator, [TEXTS])
    first_id = open_annotate(page, project, annotator)
    page.get_by_test_id("rate-A-honesty-4").click()
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("error-all")).to_be_visible()
    expect(page.get_by_test_id("error-A-truthfulness")).to_be_visible()
    # The same item, with the rating given kept.
    assert page.get_by_test_id("work").get_attribute("data-assignment") == first_id
    expect(page.get_by_test_id("rate-A-honesty-4")).to_be_checked()
    assert current_assignment(page).status == "leased"
