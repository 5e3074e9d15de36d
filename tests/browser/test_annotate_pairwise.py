"""Pairwise in the browser: label with keys and with the mouse, skip, correct, run out."""

from playwright.sync_api import expect

from annotate.models import Annotation, Assignment

from .conftest import annotation_of, current_assignment, make_project, open_annotate, wait_for_work


def real_choice(assignment: Assignment, shown: str) -> str:
    """The stored choice for a choice of the response shown as `shown` (A is shown first)."""
    if shown == "tie" or not assignment.swapped:
        return shown
    return {"A": "B", "B": "A"}[shown]


def show_swapped(page, assignment: Assignment) -> Assignment:
    """Make the page show the pair B first (the engine picks at random) and reload it."""
    Assignment.objects.filter(pk=assignment.pk).update(swapped=True, order=["r2", "r1"])
    page.reload()
    wait_for_work(page)
    assignment.refresh_from_db()
    return assignment


def test_pairwise_keys_mouse_skip_correction_and_nothing_left(page, screenshot, annotator):
    project = make_project(
        "pairwise",
        annotator,
        [
            ["Paris is the capital of **France**.", "Lyon, I *think*."],
            ["```python\nprint(2 + 2)\n```", "It prints 4."],
            ["An unclear answer.", "Another unclear answer."],
        ],
    )
    open_annotate(page, project, annotator)
    first = show_swapped(page, current_assignment(page))
    expect(page.get_by_test_id("response-A")).to_have_attribute("data-response", "r2")
    expect(page.get_by_test_id("legend")).to_be_visible()

    # Keyboard only: g opens the guidelines, 1 = A (shown first, really r2), c = clearly.
    page.keyboard.press("g")
    expect(page.get_by_test_id("guidelines")).to_have_attribute("open", "")
    page.keyboard.press("g")
    page.keyboard.press("1")
    page.keyboard.press("c")
    page.keyboard.press("r")
    page.keyboard.type("The left one names the right city.")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("choice-A")).to_be_checked()
    expect(page.get_by_test_id("strength-2")).to_be_checked()
    screenshot("pairwise-keyboard")
    page.keyboard.press("Enter")
    second_id = wait_for_work(page, str(first.pk))

    stored = annotation_of(first)
    assert stored.label == {
        "choice": real_choice(first, "A"),
        "strength": 2,
        "rationale": "The left one names the right city.",
    }
    assert stored.label["choice"] == "B"
    assert stored.time_spent_ms > 0
    expect(page.get_by_test_id("progress-done")).to_have_text("1")

    # Mouse only: B much better, whatever side the engine put each response on.
    second = current_assignment(page)
    assert str(second.pk) == second_id
    page.get_by_test_id("choice-B").click()
    page.get_by_test_id("strength-3").click()
    screenshot("pairwise")
    page.get_by_test_id("submit").click()
    third_id = wait_for_work(page, second_id)
    stored = annotation_of(second)
    assert stored.label == {"choice": real_choice(second, "B"), "strength": 3, "rationale": ""}
    assert stored.time_spent_ms > 0

    # Skip with a reason: Shift+S, pick one with the arrow keys, details, Enter.
    page.keyboard.press("Shift+S")
    expect(page.get_by_test_id("skip-reason")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_test_id("skip-reason")).to_have_value("unclear prompt")
    page.keyboard.press("Tab")
    page.keyboard.type("the question has a typo")
    page.keyboard.press("Enter")
    wait_for_work(page, third_id)
    skipped = Assignment.objects.get(pk=third_id)
    assert skipped.status == Assignment.Status.SKIPPED
    assert skipped.skip_reason == "unclear prompt: the question has a typo"
    assert not Annotation.objects.filter(assignment=skipped).exists()

    # Nothing left for this annotator.
    expect(page.get_by_test_id("nothing-left")).to_be_visible()
    expect(page.get_by_test_id("notice")).to_have_text("Skipped.")
    expect(page.get_by_test_id("progress-done")).to_have_text("2")
    expect(page.get_by_test_id("progress-skipped")).to_have_text("1")
    screenshot("nothing-left")

    # Reopen the first label from "my recent labels" and correct it with the mouse.
    first_label = annotation_of(first)
    page.locator(f'[data-testid="recent-label"][data-annotation="{first_label.pk}"] a').click()
    expect(page.get_by_test_id("editing")).to_be_visible()
    # Shown in the terms it was given in: A (r2) clearly better.
    expect(page.get_by_test_id("response-A")).to_have_attribute("data-response", "r2")
    expect(page.get_by_test_id("choice-A")).to_be_checked()
    expect(page.get_by_test_id("strength-2")).to_be_checked()
    expect(page.get_by_test_id("skip-panel")).to_have_count(0)
    screenshot("pairwise-editing")
    page.get_by_test_id("choice-B").click()
    page.get_by_test_id("strength-1").click()
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("notice")).to_have_text("Label corrected.")
    expect(page.get_by_test_id("nothing-left")).to_be_visible()

    corrected = Annotation.objects.get(pk=first_label.pk)
    assert corrected.label == {
        "choice": real_choice(first, "B"),
        "strength": 1,
        "rationale": "The left one names the right city.",
    }
    assert corrected.label["choice"] == "A"
    assert corrected.updated_at is not None
    assert corrected.time_spent_ms == first_label.time_spent_ms
    assert Annotation.objects.filter(item__project=project).count() == 2
    expect(page.locator(f'[data-annotation="{first_label.pk}"]')).to_contain_text("corrected")

    # The project page counts the same.
    page.get_by_role("link", name="Back to the project").click()
    expect(page.get_by_test_id("my-progress")).to_contain_text("2 labeled, 1 skipped")


def test_pairwise_keys_without_a_strength_store_it_as_unknown(page, annotator):
    project = make_project("pairwise", annotator, [["Paris.", "Lyon."], ["Four.", "Five."]])
    first_id = open_annotate(page, project, annotator)
    first = current_assignment(page)
    # 2 = B, then Enter: no strength given, none required.
    page.keyboard.press("2")
    expect(page.get_by_test_id("choice-B")).to_be_checked()
    page.keyboard.press("Enter")
    wait_for_work(page, first_id)
    assert annotation_of(first).label == {
        "choice": real_choice(first, "B"),
        "strength": None,
        "rationale": "",
    }
    # A strength chosen by key can be taken back with the mouse ("can't say").
    second = current_assignment(page)
    page.keyboard.press("1")
    page.keyboard.press("m")
    expect(page.get_by_test_id("strength-3")).to_be_checked()
    page.get_by_test_id("strength-unknown").click()
    page.keyboard.press("Enter")
    wait_for_work(page, str(second.pk))
    assert annotation_of(second).label["strength"] is None
