"""Labels as real data spells them: taxonomy and aspect names in any case (stored in the
config's spelling, ambiguous configs refused), and structured "missing information" notes
(stored and served back unchanged). Through the API, the import and the pages."""

import io
import json
import zipfile

import pytest
from django.core.management import call_command
from django.urls import reverse

from annotate.models import Annotation, Assignment, Item, Role
from annotate.services import item_import

from .factories import ItemFactory, MembershipFactory, ProjectFactory, api

ANSWER = "Tokyo is the capital. It has 80 million people. Tokyo is the capital."
TAXONOMY = [
    {"name": "Irrelevant", "category": "non-factual"},
    {"name": "Wrong-Grounding", "category": "factual"},
    {"name": "Redundant", "category": "non-factual"},
]
# Fine-Grained RLHF's missing-information annotations: where the missing fact is.
STRUCTURED_NOTE = [
    {"type": "missing-major", "passage": 2, "sentence": 0},
    {"type": "missing-minor", "passage": 4, "sentence": 3, "text": "Édo, 江戸"},
]


def project_of(kind: str, member, config: dict, **fields):
    project = ProjectFactory(kind=kind, gold_rate=0, **fields)
    MembershipFactory(project=project, user=member, role=Role.ADMIN)
    # Through the API, as a researcher sets a config: validated and completed by the kind.
    response = api(member).patch(
        f"/api/v1/projects/{project.slug}/", {"config": config}, format="json"
    )
    assert response.status_code == 200, response.json()
    project.refresh_from_db()
    return project


@pytest.fixture
def spans(alice):
    project = project_of("spans", alice, {"taxonomy": TAXONOMY})
    ItemFactory(
        project=project,
        external_id="q1",
        prompt="What is the capital of Japan?",
        responses=[
            {"id": "a1", "text": ANSWER, "model": "m1"},
            {"id": "a2", "text": "Kyoto.", "model": "m2"},
        ],
        metadata={"question_id": "q1", "passages": 5},
    )
    return project


def lease_and_submit(user, project, label) -> tuple[Assignment, object]:
    client = api(user)
    lease = client.post(f"/api/v1/projects/{project.slug}/assignments/next/").json()
    response = client.post(
        f"/api/v1/assignments/{lease['id']}/submit/", {"label": label}, format="json"
    )
    return Assignment.objects.get(pk=lease["id"]), response


def span(start_text: str, label: str, response: str = "a1", occurrence: int = 0) -> dict:
    start = -1
    for _ in range(occurrence + 1):
        start = ANSWER.index(start_text, start + 1)
    return {"response": response, "start": start, "end": start + len(start_text), "label": label}


# Names in any case ----------------------------------------------------------------------------


def test_span_types_match_ignoring_case_and_are_stored_in_the_configs_spelling(alice, spans):
    label = {
        "spans": [
            span("It has 80 million people.", "wrong-grounding"),
            span("Tokyo is the capital.", " REDUNDANT ", occurrence=1),
            span("Tokyo", "irrelevant"),
        ]
    }
    _, response = lease_and_submit(alice, spans, label)
    assert response.status_code == 201, response.json()
    stored = Annotation.objects.get().label["spans"]
    assert [s["label"] for s in stored] == ["Irrelevant", "Wrong-Grounding", "Redundant"]


def test_unknown_span_type_names_the_taxonomy(alice, spans):
    _, response = lease_and_submit(alice, spans, {"spans": [span("Tokyo", "irrelevent")]})
    assert response.status_code == 400
    message = response.json()["label.spans[0].label"][0]
    assert "'irrelevent' is not in the taxonomy (Irrelevant, Redundant, Wrong-Grounding)" in message
    assert not Annotation.objects.exists()


def test_imported_span_labels_and_gold_take_the_configs_spelling(alice, spans):
    row = {
        "external_id": "q2",
        "prompt": "Capital?",
        "responses": [{"id": "a1", "text": ANSWER}],
        "label": {"spans": [span("Tokyo", "IRRELEVANT")], "missing": ""},
        "gold": {"spans": [span("Tokyo", "irrelevant")]},
    }
    data = (json.dumps(row) + "\n").encode()
    report = item_import(
        project=spans, stream=io.BytesIO(data), filename="x.jsonl", keep_labels=True
    )
    assert (report.ok, report.labels) == (True, 1)
    item = Item.objects.get(external_id="q2")
    assert item.gold_label["spans"][0]["label"] == "Irrelevant"
    assert Annotation.objects.get(item=item).label["spans"][0]["label"] == "Irrelevant"


def test_rating_aspects_match_ignoring_case(alice):
    aspects = [{"name": "Helpfulness"}, {"name": "honesty"}]
    project = project_of("ratings", alice, {"aspects": aspects})
    ItemFactory(project=project, responses=[{"id": "r1", "text": "Yes.", "model": ""}])
    label = {"aspects": {"HELPFULNESS": 4, "Honesty": 5}}
    _, response = lease_and_submit(alice, project, label)
    assert response.status_code == 201, response.json()
    stored = Annotation.objects.get().label
    assert stored["responses"]["r1"]["aspects"] == {"Helpfulness": 4, "honesty": 5}


def test_rating_the_same_aspect_twice_in_two_spellings_is_refused(alice):
    project = project_of("ratings", alice, {"aspects": ["helpfulness"]})
    ItemFactory(project=project, responses=[{"id": "r1", "text": "Yes.", "model": ""}])
    label = {"aspects": {"helpfulness": 4, "Helpfulness": 2}}
    _, response = lease_and_submit(alice, project, label)
    assert response.status_code == 400
    assert (
        "rates 'helpfulness' a second time"
        in response.json()["label.responses.r1.aspects.Helpfulness"][0]
    )
    assert not Annotation.objects.exists()


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        (
            "spans",
            {"taxonomy": ["Irrelevant", "redundant", "irrelevant"]},
            "config.taxonomy[2].name",
        ),
        (
            "spans",
            {"taxonomy": [{"name": "Wrong-grounding"}, {"name": " wrong-GROUNDING "}]},
            "config.taxonomy[1].name",
        ),
        ("ratings", {"aspects": ["Helpfulness", "helpfulness"]}, "config.aspects[1].name"),
    ],
)
def test_configs_with_names_equal_but_for_case_are_refused(alice, kind, config, field):
    alice.is_staff = True
    alice.save()
    body = {"name": "Ambiguous", "kind": kind, "config": config}
    response = api(alice).post("/api/v1/projects/", body, format="json")
    assert response.status_code == 400
    message = response.json()["config"][0]
    assert message.startswith(f"{field}: ")
    assert "differ only in case" in message
    # The page that creates projects says the same, next to the config.
    client_page = api(alice)
    client_page.force_login(alice)
    page = client_page.post(
        reverse("annotate:project-create"),
        {"name": "Ambiguous", "kind": kind, "overlap": 1, "config": json.dumps(config)},
    )
    assert page.status_code == 200
    assert "differ only in case" in page.content.decode()


def test_patching_an_ambiguous_taxonomy_keeps_the_old_config(alice, spans):
    before = spans.config
    bad = {"taxonomy": [*TAXONOMY, {"name": "IRRELEVANT"}]}
    response = api(alice).patch(f"/api/v1/projects/{spans.slug}/", {"config": bad}, format="json")
    assert response.status_code == 400
    assert "differ only in case" in response.json()["config"][0]
    spans.refresh_from_db()
    assert spans.config == before


# Structured missing-information notes ---------------------------------------------------------


def test_structured_missing_note_is_stored_and_served_unchanged(alice, spans):
    label = {"spans": [span("Tokyo", "Irrelevant")], "missing": STRUCTURED_NOTE}
    _, response = lease_and_submit(alice, spans, label)
    assert response.status_code == 201, response.json()
    assert Annotation.objects.get().label["missing"] == STRUCTURED_NOTE
    served = api(alice).get(f"/api/v1/projects/{spans.slug}/annotations/").json()["results"]
    assert served[0]["label"]["missing"] == STRUCTURED_NOTE


def test_missing_note_as_one_object_and_as_text(alice, spans):
    ItemFactory(
        project=spans, external_id="q2", responses=[{"id": "a1", "text": ANSWER, "model": ""}]
    )
    note = {"type": "missing-major", "passage": 2, "sentence": 0}
    _, first = lease_and_submit(alice, spans, {"spans": [], "missing": note})
    _, second = lease_and_submit(alice, spans, {"spans": [], "missing": "  The population.  "})
    assert first.status_code == second.status_code == 201
    assert [a.label["missing"] for a in Annotation.objects.all()] == [note, "The population."]


def test_imported_structured_notes_are_kept(alice, spans):
    rows = [
        {
            "external_id": f"fg-{n}",
            "prompt": "Capital?",
            "responses": [{"id": "p0", "text": ANSWER}],
            "label": {"spans": [], "missing": note},
        }
        for n, note in enumerate([STRUCTURED_NOTE, STRUCTURED_NOTE[0], {}, "free text"])
    ]
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    report = item_import(
        project=spans, stream=io.BytesIO(data), filename="x.jsonl", keep_labels=True
    )
    assert (report.ok, report.labels) == (True, 4)
    kept = {
        a.item.external_id: a.label["missing"] for a in Annotation.objects.select_related("item")
    }
    assert kept == {
        "fg-0": STRUCTURED_NOTE,
        "fg-1": STRUCTURED_NOTE[0],
        "fg-2": {},
        "fg-3": "free text",
    }


@pytest.mark.parametrize(
    ("missing", "reason"),
    [
        (3, "expected text, an object or a list, got int"),
        (True, "expected text, an object or a list, got true/false"),
        ({"note": "x" * 20_000}, "over the limit of 20000"),
        ("x" * 20_001, "over the limit of 20000"),
    ],
)
def test_bad_missing_notes_are_refused(alice, spans, missing, reason):
    _, response = lease_and_submit(alice, spans, {"spans": [], "missing": missing})
    assert response.status_code == 400
    assert reason in response.json()["label.missing"][0]
    assert not Annotation.objects.exists()


def test_a_note_that_is_not_plain_json_is_a_row_error(alice, spans):
    # CSV label columns are read by Python's json module, which takes NaN; a note cannot keep it.
    label = json.dumps({"spans": [], "missing": {"passage": float("nan")}})
    content = (
        "external_id,prompt,response_1,label\n"
        + f'q9,Capital?,Tokyo.,"{label.replace(chr(34), 2 * chr(34))}"\n'
    )
    data = content.encode()
    report = item_import(project=spans, stream=io.BytesIO(data), filename="x.csv", keep_labels=True)
    assert [(e.line, e.field) for e in report.errors] == [(2, "label.missing")]
    assert "not plain JSON" in report.errors[0].message
    assert not Item.objects.filter(external_id="q9").exists()


def test_structured_note_reopens_on_the_page_and_survives_a_correction(client, alice, spans):
    assignment, response = lease_and_submit(
        alice, spans, {"spans": [span("Tokyo", "Irrelevant")], "missing": STRUCTURED_NOTE}
    )
    assert response.status_code == 201
    annotation = Annotation.objects.get()
    client.force_login(alice)
    edit_url = reverse("annotate:annotation-edit", args=[spans.slug, annotation.pk])
    form = client.get(edit_url, HTTP_HX_REQUEST="true").content.decode()
    assert 'name="missing_format" value="json"' in form
    assert "&quot;missing-major&quot;" in form
    # The page posts back what it showed, with the span switched to another type.
    shown = json.dumps(STRUCTURED_NOTE, ensure_ascii=False, indent=2)
    spans_json = json.dumps([span("Tokyo", "Redundant")])
    data = {"spans_json": spans_json, "missing": shown, "missing_format": "json"}
    assert client.post(edit_url, data).status_code in (200, 302)
    annotation.refresh_from_db()
    assert annotation.label["missing"] == STRUCTURED_NOTE
    assert annotation.label["spans"][0]["label"] == "Redundant"
    # A note broken while editing is an error next to the field, and changes nothing.
    bad = client.post(edit_url, {**data, "missing": '{"type": '}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 422
    assert "This note must stay JSON" in bad.content.decode()
    annotation.refresh_from_db()
    assert annotation.label["missing"] == STRUCTURED_NOTE


def test_spans_export_carries_structured_notes_as_their_json_text(alice, spans, tmp_path):
    ItemFactory(
        project=spans, external_id="q2", responses=[{"id": "a1", "text": ANSWER, "model": ""}]
    )
    _, first = lease_and_submit(alice, spans, {"spans": [], "missing": STRUCTURED_NOTE})
    _, second = lease_and_submit(alice, spans, {"spans": [], "missing": "The population."})
    assert first.status_code == second.status_code == 201
    call_command(
        "export_dataset",
        spans.slug,
        "--format",
        "spans",
        "--test-fraction",
        "0",
        "--out",
        str(tmp_path),
    )
    (archive,) = tmp_path.glob("*.zip")
    with zipfile.ZipFile(archive) as zipped:
        rows = [json.loads(line) for line in zipped.read("train.jsonl").decode().splitlines()]
    notes = {row["prompt"]: row["missing"] for row in rows}
    structured = [
        json.loads(note)
        for row_notes in notes.values()
        for note in row_notes
        if note.startswith("[")
    ]
    assert structured == [STRUCTURED_NOTE]
    assert ["The population."] in notes.values()
