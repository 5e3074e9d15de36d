"""The annotate page: one item at a time for each kind, htmx swaps, errors, skips, corrections."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from django.urls import reverse

from annotate.forms import label_from_post
from annotate.kinds import get_kind
from annotate.models import Annotation, Assignment, Role

from .factories import AnnotationFactory, ItemFactory, MembershipFactory, ProjectFactory

HTMX = {"HTTP_HX_REQUEST": "true"}
EVIL = (
    "It is **four**.\n\n<script>alert('x')</script>\n\n[click me](javascript:alert(1))\n\n"
    "```python\nprint(2 + 2)\n```"
)
CHAT = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is 2 + 2?"},
]


def make_project(kind: str, member, config: dict | None = None, **fields):
    config = get_kind(kind).clean_config(config or {})
    project = ProjectFactory(kind=kind, config=config, gold_rate=0, **fields)
    MembershipFactory(project=project, user=member, role=Role.ANNOTATOR)
    return project


def annotate_url(project) -> str:
    return reverse("annotate:annotate", args=[project.slug])


def lease(client, project) -> Assignment:
    """Open the annotate page; returns the assignment it shows."""
    response = client.get(annotate_url(project))
    assert response.status_code == 200
    return Assignment.objects.get(item__project=project, status=Assignment.Status.LEASED)


def submit(client, project, assignment, data: dict, **headers):
    url = reverse("annotate:annotate-submit", args=[project.slug, assignment.pk])
    return client.post(url, data, **headers)


def force_order(assignment: Assignment, order: list[str], swapped: bool = False) -> None:
    Assignment.objects.filter(pk=assignment.pk).update(order=order, swapped=swapped)
    assignment.refresh_from_db()


@pytest.fixture
def pairwise(alice):
    project = make_project("pairwise", alice)
    ItemFactory(
        project=project,
        external_id="chat-1",
        prompt=CHAT,
        responses=[
            {"id": "a", "text": EVIL, "model": "m1"},
            {"id": "b", "text": "Four, I think.", "model": "m2"},
        ],
    )
    return project


def test_page_shows_chat_prompt_and_safe_markdown(client, alice, pairwise):
    client.force_login(alice)
    response = client.get(annotate_url(pairwise))
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('data-testid="chat-message"') == 2
    assert "Answer briefly." in html and "What is 2 + 2?" in html
    assert "<strong>four</strong>" in html
    assert "<script>alert" not in html
    assert 'href="javascript' not in html  # the link is shown as text, never followed
    assert 'data-testid="guidelines"' in html and 'data-testid="legend"' in html
    assert 'data-testid="choice-A"' in html and 'data-testid="strength-3"' in html


def test_anonymous_is_sent_to_login(client, pairwise):
    response = client.get(annotate_url(pairwise))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_non_member_gets_404(client, bob, pairwise):
    client.force_login(bob)
    assert client.get(annotate_url(pairwise)).status_code == 404


def test_someone_elses_assignment_is_404(client, alice, bob, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    MembershipFactory(project=pairwise, user=bob, role=Role.ANNOTATOR)
    client.force_login(bob)
    response = submit(client, pairwise, assignment, {"choice": "tie"})
    assert response.status_code == 404
    assert not Annotation.objects.exists()


def test_nothing_left_page(client, alice):
    project = make_project("pairwise", alice)
    client.force_login(alice)
    response = client.get(annotate_url(project))
    assert 'data-testid="nothing-left"' in response.content.decode()


def test_project_page_has_start_button_and_my_progress(client, alice, pairwise):
    client.force_login(alice)
    html = client.get(pairwise.get_absolute_url()).content.decode()
    assert annotate_url(pairwise) in html
    assert 'data-testid="my-progress"' in html


# Pairwise -----------------------------------------------------------------------------------


def test_pairwise_submit_stores_label_and_redirects(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    force_order(assignment, ["a", "b"])
    data = {"choice": "A", "strength": "3", "rationale": " Correct. ", "time_spent_ms": "4200"}
    response = submit(client, pairwise, assignment, data)
    assert response.status_code == 302
    assert response["Location"] == annotate_url(pairwise)
    annotation = Annotation.objects.get()
    assert annotation.label == {"choice": "A", "strength": 3, "rationale": "Correct."}
    assert annotation.annotator == alice
    assert annotation.time_spent_ms == 4200


def test_pairwise_swapped_display_is_stored_about_the_real_responses(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    force_order(assignment, ["b", "a"], swapped=True)
    html = client.get(annotate_url(pairwise)).content.decode()
    # Response "b" is shown first, as A.
    assert html.index("Four, I think.") < html.index("<strong>four</strong>")
    submit(client, pairwise, assignment, {"choice": "A", "strength": "2"})
    assert Annotation.objects.get().label["choice"] == "B"


def test_pairwise_tie_ignores_strength(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    submit(client, pairwise, assignment, {"choice": "tie", "strength": "3"})
    assert Annotation.objects.get().label == {"choice": "tie", "strength": None, "rationale": ""}


def test_pairwise_strength_left_unset_is_stored_as_unknown(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    force_order(assignment, ["a", "b"])
    html = client.get(annotate_url(pairwise)).content.decode()
    assert 'data-testid="strength-unknown"' in html
    assert submit(client, pairwise, assignment, {"choice": "B", "strength": ""}).status_code == 302
    assert Annotation.objects.get().label == {"choice": "B", "strength": None, "rationale": ""}


def test_pairwise_strength_unknown_reopens_as_unknown(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    submit(client, pairwise, assignment, {"choice": "A"})
    annotation = Annotation.objects.get()
    edit_url = reverse("annotate:annotation-edit", args=[pairwise.slug, annotation.pk])
    form = client.get(edit_url, **HTMX).content.decode()
    assert 'data-testid="choice-A" checked' in form
    assert 'data-testid="strength-unknown" checked' in form
    assert "A better" in client.get(annotate_url(pairwise)).content.decode()


def test_pairwise_strength_required_by_the_project(client, alice):
    project = make_project("pairwise", alice, {"require_strength": True})
    ItemFactory(project=project)
    client.force_login(alice)
    assignment = lease(client, project)
    html = client.get(annotate_url(project)).content.decode()
    assert 'data-testid="strength-unknown"' not in html
    response = submit(client, project, assignment, {"choice": "A", "strength": ""}, **HTMX)
    assert response.status_code == 422
    assert 'data-testid="error-strength"' in response.content.decode()
    assert not Annotation.objects.exists()
    # A tie still needs none.
    assert submit(client, project, assignment, {"choice": "tie"}).status_code == 302


def test_time_spent_falls_back_to_the_lease(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    submit(client, pairwise, assignment, {"choice": "tie", "time_spent_ms": "nonsense"})
    assert Annotation.objects.get().time_spent_ms is not None


def test_htmx_submit_returns_the_next_item_partial(client, alice, pairwise):
    ItemFactory(project=pairwise, external_id="second", prompt="Second question?")
    client.force_login(alice)
    assignment = lease(client, pairwise)
    response = submit(client, pairwise, assignment, {"choice": "B", "strength": "1"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.lstrip().startswith('<div id="work"')
    assert "Second question?" in html
    assert 'data-testid="progress-done">1<' in html
    assert json.loads(response["HX-Trigger"])["progress-changed"]["done"] == 1


def test_bad_pairwise_input_shows_errors_keeps_input_and_stores_nothing(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    data = {"choice": "A", "strength": "7", "rationale": "my careful words"}
    response = submit(client, pairwise, assignment, data, **HTMX)
    html = response.content.decode()
    assert response.status_code == 422
    assert 'data-testid="error-strength"' in html
    assert "my careful words" in html
    assert 'value="A" data-key="1" data-testid="choice-A" checked' in html
    assert not Annotation.objects.exists()
    # Without htmx the page comes back whole, with the errors.
    response = submit(client, pairwise, assignment, {"rationale": "x"})
    assert response.status_code == 200
    assert 'data-testid="error-choice"' in response.content.decode()


def test_kind_errors_are_shown_next_to_the_field(client, alice):
    project = make_project("pairwise", alice, {"require_rationale": True})
    ItemFactory(project=project)
    client.force_login(alice)
    assignment = lease(client, project)
    response = submit(client, project, assignment, {"choice": "A", "strength": "1"}, **HTMX)
    assert response.status_code == 422
    assert 'data-testid="error-rationale"' in response.content.decode()
    assert not Annotation.objects.exists()


def test_double_submit_stores_one_annotation(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    data = {"choice": "A", "strength": "2", "request_id": "r1"}
    first = submit(client, pairwise, assignment, data, **HTMX)
    second = submit(client, pairwise, assignment, data, **HTMX)
    assert first.status_code == second.status_code == 200
    assert Annotation.objects.count() == 1
    assert 'data-testid="nothing-left"' in second.content.decode()


def test_label_json_is_accepted_and_validated(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    bad = submit(client, pairwise, assignment, {"label_json": '{"choice": "C"}'}, **HTMX)
    assert bad.status_code == 422
    assert not Annotation.objects.exists()
    label = {"choice": "tie", "strength": None, "rationale": ""}
    submit(client, pairwise, assignment, {"label_json": json.dumps(label)})
    assert Annotation.objects.get().label == label


# Skips and corrections ----------------------------------------------------------------------


def test_skip_with_a_reason(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    url = reverse("annotate:annotate-skip", args=[pairwise.slug, assignment.pk])
    response = client.post(url, {"reason": "other", "reason_text": ""}, **HTMX)
    assert response.status_code == 422
    assert 'data-testid="error-skip"' in response.content.decode()
    response = client.post(url, {"reason": "need expertise", "reason_text": "chemistry"}, **HTMX)
    assert response.status_code == 200
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.SKIPPED
    assert assignment.skip_reason == "need expertise: chemistry"
    assert 'data-testid="nothing-left"' in response.content.decode()


def test_recent_labels_reopen_and_correct(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    force_order(assignment, ["b", "a"], swapped=True)
    submit(client, pairwise, assignment, {"choice": "A", "strength": "1"})
    annotation = Annotation.objects.get()
    page = client.get(annotate_url(pairwise)).content.decode()
    edit_url = reverse("annotate:annotation-edit", args=[pairwise.slug, annotation.pk])
    assert 'data-testid="recent-label"' in page and edit_url in page
    assert "A slightly better" in page
    # The reopened form shows the label as it was given, in display terms.
    form = client.get(edit_url, **HTMX).content.decode()
    assert 'data-testid="choice-A" checked' in form and 'data-testid="strength-1" checked' in form
    response = client.post(edit_url, {"choice": "B", "strength": "3"}, **HTMX)
    assert response.status_code == 200
    annotation.refresh_from_db()
    assert annotation.label == {"choice": "A", "strength": 3, "rationale": ""}
    assert annotation.updated_at is not None
    assert Annotation.objects.count() == 1


def test_correcting_with_bad_input_changes_nothing(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    submit(client, pairwise, assignment, {"choice": "tie"})
    annotation = Annotation.objects.get()
    edit_url = reverse("annotate:annotation-edit", args=[pairwise.slug, annotation.pk])
    response = client.post(edit_url, {"choice": "A", "strength": "9"})
    assert response.status_code == 200
    assert 'data-testid="error-strength"' in response.content.decode()
    annotation.refresh_from_db()
    assert annotation.label["choice"] == "tie"


def test_a_label_without_assignment_can_be_corrected(client, alice, pairwise):
    item = pairwise.items.get()
    annotation = AnnotationFactory(item=item, annotator=alice, label={"choice": "tie"})
    client.force_login(alice)
    edit_url = reverse("annotate:annotation-edit", args=[pairwise.slug, annotation.pk])
    form = client.get(edit_url).content.decode()
    assert 'data-testid="choice-tie" checked' in form
    client.post(edit_url, {"choice": "B", "strength": "2"})
    annotation.refresh_from_db()
    assert annotation.label == {"choice": "B", "strength": 2, "rationale": ""}


def test_someone_elses_label_cannot_be_reopened(client, alice, bob, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    submit(client, pairwise, assignment, {"choice": "tie"})
    annotation = Annotation.objects.get()
    MembershipFactory(project=pairwise, user=bob, role=Role.ANNOTATOR)
    client.force_login(bob)
    edit_url = reverse("annotate:annotation-edit", args=[pairwise.slug, annotation.pk])
    assert client.get(edit_url).status_code == 404
    assert client.post(edit_url, {"choice": "A", "strength": "1"}).status_code == 404


# Listwise -----------------------------------------------------------------------------------


@pytest.fixture
def listwise(alice):
    project = make_project("listwise", alice)
    ItemFactory(
        project=project,
        prompt="Rank these.",
        responses=[
            {"id": "x", "text": "First *x*.", "model": ""},
            {"id": "y", "text": "<script>bad()</script>", "model": ""},
            {"id": "z", "text": "Third z.", "model": ""},
        ],
    )
    return project


def test_listwise_page_and_ranking(client, alice, listwise):
    client.force_login(alice)
    assignment = lease(client, listwise)
    force_order(assignment, ["z", "x", "y"])
    html = client.get(annotate_url(listwise)).content.decode()
    assert 'data-testid="rank-card-A"' in html and 'name="rank-z"' in html
    assert "<script>bad" not in html and "<em>x</em>" in html
    response = submit(client, listwise, assignment, {"rank-x": "2", "rank-y": "2", "rank-z": "1"})
    assert response.status_code == 302
    assert Annotation.objects.get().label == {"ranking": ["z", ["x", "y"]]}


def test_listwise_order_as_shown_needs_a_confirmation(client, alice, listwise):
    client.force_login(alice)
    assignment = lease(client, listwise)
    force_order(assignment, ["z", "x", "y"])
    as_shown = {"rank-z": "1", "rank-x": "2", "rank-y": "3"}
    response = submit(client, listwise, assignment, as_shown, **HTMX)
    assert response.status_code == 422
    assert "Move at least one card, or tick “This order is right”." in response.content.decode()
    assert not Annotation.objects.exists()
    response = submit(client, listwise, assignment, {**as_shown, "order_confirmed": "1"})
    assert response.status_code == 302
    assert Annotation.objects.get().label == {"ranking": ["z", "x", "y"]}


def test_listwise_missing_rank_and_forbidden_ties(client, alice):
    project = make_project("listwise", alice, {"allow_ties": False})
    ItemFactory(project=project)
    client.force_login(alice)
    assignment = lease(client, project)
    response = submit(client, project, assignment, {"rank-1": "1", "rank-2": "1"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 422
    assert "Give a rank from 1 (best) to 3." in html
    response = submit(
        client, project, assignment, {"rank-1": "1", "rank-2": "1", "rank-3": "2"}, **HTMX
    )
    assert "ties are not allowed" in response.content.decode()
    assert not Annotation.objects.exists()


# Spans --------------------------------------------------------------------------------------

SPAN_TEXT = "Café 👍🏽 naïve 東京 is nice.\r\nSecond line."


@pytest.fixture
def spans(alice):
    project = make_project("spans", alice)
    ItemFactory(
        project=project,
        prompt="Describe Tokyo.",
        responses=[{"id": "r1", "text": SPAN_TEXT, "model": ""}],
    )
    return project


def test_spans_page_shows_raw_text_for_selection(client, alice, spans):
    client.force_login(alice)
    lease(client, spans)
    html = client.get(annotate_url(spans)).content.decode()
    assert 'data-testid="span-text-A"' in html
    assert 'id="span-texts"' in html
    assert 'data-testid="tag-irrelevant"' in html and 'data-testid="no-errors"' in html


def test_spans_submit_with_code_point_offsets(client, alice, spans):
    client.force_login(alice)
    assignment = lease(client, spans)
    start = SPAN_TEXT.index("東京")
    span = {
        "response": "r1",
        "start": start,
        "end": start + 2,
        "label": "unverifiable",
        "correction": "Kyoto",
        "text": "東京",
    }
    data = {
        "spans_json": json.dumps([span]),
        "missing": "The population.",
        "corrected-r1": "Café is nice.",
    }
    response = submit(client, spans, assignment, data)
    assert response.status_code == 302
    label = Annotation.objects.get().label
    assert label["spans"] == [{k: v for k, v in span.items() if k != "text"}]
    assert label["missing"] == "The population."
    assert label["corrected"] == {"r1": "Café is nice."}


def test_spans_offsets_that_miss_the_text_are_rejected(client, alice, spans):
    client.force_login(alice)
    assignment = lease(client, spans)
    # UTF-16 offsets (what a browser counts) do not match Python's code points after the emoji.
    start16 = len(SPAN_TEXT[: SPAN_TEXT.index("東京")].encode("utf-16-le")) // 2
    span = {"response": "r1", "start": start16, "end": start16 + 2, "label": "redundant"}
    data = {"spans_json": json.dumps([{**span, "text": "東京"}])}
    response = submit(client, spans, assignment, data, **HTMX)
    assert response.status_code == 422
    assert 'data-testid="error-spans"' in response.content.decode()
    # What was entered comes back to the page.
    assert "redundant" in response.content.decode()
    assert not Annotation.objects.exists()


def test_spans_empty_list_only_through_no_errors(client, alice, spans):
    client.force_login(alice)
    assignment = lease(client, spans)
    response = submit(client, spans, assignment, {"spans_json": "[]"}, **HTMX)
    assert response.status_code == 422
    assert "No errors" in response.content.decode()
    response = submit(client, spans, assignment, {"spans_json": "[]", "action": "no_errors"})
    assert response.status_code == 302
    assert Annotation.objects.get().label == {"spans": [], "missing": "", "corrected": {}}


def test_spans_unchanged_correction_is_not_stored(alice, spans):
    config = get_kind("spans").clean_config({})
    responses = [{"id": "r1", "text": "a\nb", "model": ""}]
    data = {"spans_json": "[]", "action": "no_errors", "corrected-r1": "a\r\nb"}
    assert label_from_post("spans", data, responses, config)["corrected"] == {}


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_spans_js_offsets_agree_with_python():
    """static/js/spans.js converts the browser's UTF-16 offsets to Python's code points."""
    script = Path(__file__).resolve().parent.parent / "static" / "js" / "spans.js"
    texts = [SPAN_TEXT, "e\u0301te\u0301 🇫🇷 👩‍👩‍👧 中文字符 𝕏𝕐", "plain"]
    cases = []
    for text in texts:
        for cp in range(len(text) + 1):
            cases.append([text, len(text[:cp].encode("utf-16-le")) // 2, cp])
    program = (
        f"global.window = global; require({json.dumps(str(script))});"
        "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "const out = cases.map(([t, u]) => [window.PrefhubSpans.toCodePoints(t, u),"
        " window.PrefhubSpans.toUtf16(t, window.PrefhubSpans.toCodePoints(t, u))]);"
        "process.stdout.write(JSON.stringify(out));"
    )
    result = subprocess.run(
        ["node", "-e", program], input=json.dumps(cases), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    for (_, utf16, cp), (got_cp, back) in zip(cases, json.loads(result.stdout), strict=True):
        assert (got_cp, back) == (cp, utf16)


# Ratings ------------------------------------------------------------------------------------


@pytest.fixture
def ratings(alice):
    project = make_project("ratings", alice)
    ItemFactory(
        project=project,
        prompt="Explain.",
        responses=[
            {"id": "p", "text": "Answer *p* [x](javascript:void(0))", "model": ""},
            {"id": "q", "text": "Answer q", "model": ""},
        ],
    )
    return project


def _all_ratings(project, score: str) -> dict:
    aspects = project.config["aspects"]
    return {f"rating-{rid}-{a['name']}": score for rid in ("p", "q") for a in aspects}


def test_ratings_page_and_submit(client, alice, ratings):
    client.force_login(alice)
    assignment = lease(client, ratings)
    html = client.get(annotate_url(ratings)).content.decode()
    assert 'data-testid="rate-A-helpfulness-5"' in html and "excellent" in html
    assert 'href="javascript' not in html
    data = {**_all_ratings(ratings, "4"), "rating-p-honesty": "2", "rationale-q": "fine"}
    assert submit(client, ratings, assignment, data).status_code == 302
    label = Annotation.objects.get().label
    assert label["responses"]["p"]["aspects"]["honesty"] == 2
    assert label["responses"]["q"]["aspects"]["helpfulness"] == 4
    assert label["responses"]["q"]["rationale"] == "fine"


def test_ratings_missing_aspect_shows_error_and_keeps_the_rest(client, alice, ratings):
    client.force_login(alice)
    assignment = lease(client, ratings)
    force_order(assignment, ["p", "q"])
    data = _all_ratings(ratings, "3")
    del data["rating-q-truthfulness"]
    data["rating-p-honesty"] = "9"
    response = submit(client, ratings, assignment, data, **HTMX)
    html = response.content.decode()
    assert response.status_code == 422
    assert 'data-testid="error-B-truthfulness"' in html
    assert "Rate honesty from 1 to 5." in html
    assert html.count(" checked") == len(data) - 1
    assert not Annotation.objects.exists()


def test_page_queries_do_not_grow_with_recent_labels(client, alice, monkeypatch):
    from datetime import timedelta

    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    project = make_project("pairwise", alice)
    ItemFactory.create_batch(8, project=project)
    client.force_login(alice)
    # Due leases are looked for at most every few seconds: look on every request here, so that
    # a slow machine crossing that interval does not change the count.
    monkeypatch.setattr("annotate.assignment.RECLAIM_EVERY", timedelta(0))

    def label_one_and_count() -> int:
        assignment = lease(client, project)
        submit(client, project, assignment, {"choice": "tie"})
        # The project's progress is cached for seconds: count the page with a cold cache always.
        cache.clear()
        with CaptureQueriesContext(connection) as queries:
            client.get(annotate_url(project))
        return len(queries)

    counts = [label_one_and_count() for _ in range(6)]
    assert counts == [counts[0]] * 6, counts


# Input no page sends: a NUL character in a field, JSON nested too deeply ---------------------


def _refused_for_a_nul(response, kept: str, testid: str = "error-all") -> None:
    html = response.content.decode()
    assert response.status_code == 400
    assert f'data-testid="{testid}"' in html and "NUL character" in html
    # What was typed comes back, less the NUL: nothing is lost.
    assert kept in html and "\x00" not in html


def test_a_nul_in_the_pairwise_rationale_is_a_400_and_stores_nothing(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    data = {"choice": "A", "strength": "2", "rationale": "my care\x00ful words"}
    _refused_for_a_nul(submit(client, pairwise, assignment, data), "my careful words")
    # htmx swaps the form back in (422, as for every form error), with the same message.
    response = submit(client, pairwise, assignment, data, **HTMX)
    assert response.status_code == 422 and "NUL character" in response.content.decode()
    assert not Annotation.objects.exists()
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.LEASED


def test_a_nul_in_the_skip_reason_is_a_400_and_skips_nothing(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    url = reverse("annotate:annotate-skip", args=[pairwise.slug, assignment.pk])
    response = client.post(url, {"reason": "other", "reason_text": "too\x00 long"})
    _refused_for_a_nul(response, "too long", testid="error-skip")
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.LEASED and assignment.skip_reason == ""


def test_a_nul_in_the_spans_missing_note_is_a_400_and_stores_nothing(client, alice, spans):
    client.force_login(alice)
    assignment = lease(client, spans)
    data = {"spans_json": "[]", "action": "no_errors", "missing": "The popu\x00lation."}
    _refused_for_a_nul(submit(client, spans, assignment, data), "The population.")
    assert not Annotation.objects.exists()


def test_a_nul_in_a_correction_is_a_400_and_keeps_the_label(client, alice, pairwise):
    client.force_login(alice)
    assignment = lease(client, pairwise)
    submit(client, pairwise, assignment, {"choice": "A", "strength": "1"})
    annotation = Annotation.objects.get()
    before = annotation.label
    edit_url = reverse("annotate:annotation-edit", args=[pairwise.slug, annotation.pk])
    response = client.post(edit_url, {"choice": "B", "strength": "3", "rationale": "x\x00y"})
    _refused_for_a_nul(response, "xy")
    annotation.refresh_from_db()
    assert annotation.label == before and annotation.updated_at is None


@pytest.mark.parametrize(
    "data",
    [
        {"label_json": "[" * 100_000},
        {"spans_json": "[" * 100_000},
        {"spans_json": "[]", "action": "no_errors", "missing_format": "json",
         "missing": "[" * 100_000},
    ],
)  # fmt: skip
def test_a_json_bomb_in_a_page_field_is_a_form_error(client, alice, spans, data):
    client.force_login(alice)
    assignment = lease(client, spans)
    response = submit(client, spans, assignment, data, **HTMX)
    assert response.status_code == 422
    assert not Annotation.objects.exists()
