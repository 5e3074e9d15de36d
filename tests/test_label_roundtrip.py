"""A small preference set shaped like a published one, in through the API's import and back out
through its item and annotation lists, compared with the source row by row: a few questions,
four answers each with their ids and models, six pairs per question (ties, no strength),
rankings with ties, error spans named in another case, structured missing-information notes,
metadata. Nothing may be lost, changed or invented; importing it again adds nothing."""

import itertools

import pytest

from annotate.kinds import get_kind
from annotate.models import Role

from .factories import MembershipFactory, ProjectFactory, api

QUESTIONS = {
    f"q{n}": {
        "prompt": f"Passage {n}: the river floods in spring.\n\nQuestion {n}: when does it flood?",
        "answers": {
            f"q{n}-a{k}": (f"Answer {k} to {n}: {'in spring' if k < 3 else 'never'}.", f"model-{k}")
            for k in range(1, 5)
        },
    }
    for n in range(1, 4)
}
TAXONOMY = ["Irrelevant", "Redundant", "Wrong-Grounding"]
NOTE = {"type": "missing-major", "passage": 1, "sentence": 0}


def preference(qid: str, first: str, second: str, n: int) -> tuple[dict, dict]:
    """One pair of a question's answers: a TRL row when one is better, our own shape for a tie;
    with the label we expect back, in terms of the source's ids."""
    question, answers = QUESTIONS[qid], QUESTIONS[qid]["answers"]
    meta = {"question_id": qid, "annotator": f"w{n % 3}"}
    if n % 4 == 3:
        row = {
            "external_id": f"{qid}:{first}:{second}",
            "prompt": question["prompt"],
            "responses": [
                {"id": rid, "text": answers[rid][0], "model": answers[rid][1]}
                for rid in (first, second)
            ],
            "label": {"choice": "tie"},
            "metadata": meta,
        }
        return row, {"tie": {first, second}}
    chosen, rejected = (first, second) if n % 2 else (second, first)
    row = {
        "id": f"{qid}:{first}:{second}",
        "prompt": question["prompt"],
        "chosen": answers[chosen][0],
        "rejected": answers[rejected][0],
        "chosen_id": chosen,
        "rejected_id": rejected,
        "chosen_model": answers[chosen][1],
        "rejected_model": answers[rejected][1],
        **meta,
    }
    return row, {"chosen": chosen, "rejected": rejected}


def project_for(kind: str, member, **config):
    project = ProjectFactory(kind=kind, slug=kind, config=get_kind(kind).clean_config(config))
    MembershipFactory(project=project, user=member, role=Role.RESEARCHER)
    return project


def import_rows(client, project, rows: list[dict]) -> dict:
    body = {"items": rows, "keep_labels": True}
    response = client.post(f"/api/v1/projects/{project.slug}/items/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def walk(client, url: str) -> list[dict]:
    rows, response = [], client.get(url, {"page_size": 7})
    while True:
        rows += response.json()["results"]
        if not response.json()["next"]:
            return rows
        response = client.get(response.json()["next"])


def read_back(client, project) -> tuple[dict, dict]:
    items = {i["external_id"]: i for i in walk(client, f"/api/v1/projects/{project.slug}/items/")}
    labels: dict[str, list[dict]] = {}
    for annotation in walk(client, f"/api/v1/projects/{project.slug}/annotations/"):
        assert annotation["source"] == "imported"
        labels.setdefault(annotation["item_external_id"], []).append(annotation["label"])
    return items, labels


@pytest.fixture
def client(alice):
    return api(alice)


def test_pairs_with_ids_models_ties_and_no_strength_come_back_as_they_went_in(alice, client):
    project = project_for("pairwise", alice)
    expected, rows = {}, []
    pairs = [
        (qid, pair)
        for qid in QUESTIONS
        for pair in itertools.combinations(QUESTIONS[qid]["answers"], 2)
    ]
    for n, (qid, (first, second)) in enumerate(pairs):
        row, want = preference(qid, first, second, n)
        rows.append(row)
        expected[row.get("id") or row["external_id"]] = (qid, want)
    report = import_rows(client, project, rows)
    assert (report["created"], report["labels"], report["invalid"]) == (18, 18, 0)

    items, labels = read_back(client, project)
    assert set(items) == set(labels) == set(expected)
    ties = 0
    for external_id, (qid, want) in expected.items():
        item, (label,) = items[external_id], labels[external_id]
        answers = QUESTIONS[qid]["answers"]
        # Every response keeps its source id, text and model.
        for response in item["responses"]:
            assert (response["text"], response["model"]) == answers[response["id"]]
        assert item["metadata"]["question_id"] == qid
        assert label["strength"] is None
        if "tie" in want:
            ties += 1
            assert label["choice"] == "tie"
            assert {r["id"] for r in item["responses"]} == want["tie"]
        else:
            chosen = item["responses"][{"A": 0, "B": 1}[label["choice"]]]
            assert chosen["id"] == want["chosen"]
    assert ties == 4

    again = import_rows(client, project, rows)
    assert (again["created"], again["labels"], again["labels_skipped_existing"]) == (0, 0, 18)
    body = {"items": rows, "labels_for_existing": True}
    again = client.post(f"/api/v1/projects/{project.slug}/items/", body, format="json").json()
    assert (again["labels"], again["labels_already_there"]) == (0, 18)
    assert read_back(client, project)[1] == labels


def test_rankings_with_ties_come_back_as_they_went_in(alice, client):
    project = project_for("listwise", alice, max_responses=4)
    rankings = {
        "q1": ["q1-a2", ["q1-a1", "q1-a3"], "q1-a4"],
        "q2": [["q2-a1", "q2-a2", "q2-a3", "q2-a4"]],
        "q3": ["q3-a4", "q3-a3", "q3-a2", "q3-a1"],
    }
    rows = [
        {
            "external_id": qid,
            "prompt": QUESTIONS[qid]["prompt"],
            "responses": [
                {"id": rid, "text": text, "model": model}
                for rid, (text, model) in QUESTIONS[qid]["answers"].items()
            ],
            "label": {"ranking": ranking},
            "metadata": {"question_id": qid},
        }
        for qid, ranking in rankings.items()
    ]
    assert import_rows(client, project, rows)["labels"] == 3
    items, labels = read_back(client, project)
    assert {qid: label["ranking"] for qid, (label,) in labels.items()} == rankings
    for row in rows:
        assert items[row["external_id"]]["responses"] == row["responses"]


def test_spans_in_any_case_and_structured_notes_come_back_in_the_configs_spelling(alice, client):
    project = project_for("spans", alice, taxonomy=TAXONOMY)
    rows, expected = [], {}
    for qid, question in QUESTIONS.items():
        for rid, (text, model) in question["answers"].items():
            if "never" not in text:
                continue
            start = text.index("never")
            given = {
                "spans": [
                    {"response": rid, "start": start, "end": start + 5, "label": "wrong-grounding"},
                    {"response": rid, "start": 0, "end": 6, "label": "IRRELEVANT"},
                ],
                "missing": NOTE if rid.endswith("a4") else "",
            }
            rows.append(
                {
                    "external_id": rid,
                    "prompt": question["prompt"],
                    "responses": [{"id": rid, "text": text, "model": model}],
                    "label": given,
                    "metadata": {"question_id": qid},
                }
            )
            expected[rid] = {
                "spans": [
                    {
                        "response": rid,
                        "start": 0,
                        "end": 6,
                        "label": "Irrelevant",
                        "correction": None,
                    },
                    {
                        "response": rid,
                        "start": start,
                        "end": start + 5,
                        "label": "Wrong-Grounding",
                        "correction": None,
                    },
                ],
                "missing": given["missing"],
                "corrected": {},
            }
    assert import_rows(client, project, rows)["labels"] == len(rows) == 6
    items, labels = read_back(client, project)
    assert {rid: label for rid, (label,) in labels.items()} == expected
    assert {rid: item["metadata"] for rid, item in items.items()} == {
        rid: {"question_id": rid.split("-")[0]} for rid in expected
    }
