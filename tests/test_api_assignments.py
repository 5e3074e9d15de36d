"""API: next assignment, submit, skip; every bad input a 400 naming its field; others' a 404."""

import pytest
from django.core.cache import cache

from annotate import assignment as engine
from annotate.models import Annotation, Assignment, Project, Role

from .factories import ItemFactory, MembershipFactory, api

NEXT = "/api/v1/projects/alices-pairs/assignments/next/"
GOOD = {"choice": "A", "strength": 2, "rationale": "Shorter and right."}


def submit_url(pk) -> str:
    return f"/api/v1/assignments/{pk}/submit/"


def skip_url(pk) -> str:
    return f"/api/v1/assignments/{pk}/skip/"


@pytest.fixture(autouse=True)
def no_gold_turns(project):
    project.gold_rate = 0
    project.save()


@pytest.fixture
def lease(project, annotator):
    ItemFactory(project=project, external_id="q1", prompt="Which is kinder?")
    response = api(annotator).post(NEXT)
    assert response.status_code == 200, response.content
    return response.json()


def test_next_gives_the_item_in_display_order(project, annotator, monkeypatch):
    item = ItemFactory(project=project, external_id="q1")
    monkeypatch.setattr(engine._random, "random", lambda: 0.0)
    response = api(annotator).post(NEXT)
    assert response.status_code == 200
    body = response.json()
    assignment = Assignment.objects.get()
    assert body["id"] == assignment.pk and body["item"] == item.pk
    assert (body["kind"], body["external_id"], body["status"]) == ("pairwise", "q1", "leased")
    assert body["prompt"] == item.prompt
    assert body["swapped"] is True and body["order"] == ["2", "1"]
    assert [r["id"] for r in body["responses"]] == ["2", "1"]
    assert body["responses"][0]["text"] == item.responses[1]["text"]
    assert body["expires_at"]


def test_next_gives_the_same_lease_until_done(lease, annotator):
    assert api(annotator).post(NEXT).json()["id"] == lease["id"]


def test_next_is_204_when_nothing_is_left(project, annotator):
    response = api(annotator).post(NEXT)
    assert response.status_code == 204
    assert not response.content


def test_next_of_someone_elses_project_is_404(project, bob):
    ItemFactory(project=project)
    assert api(bob).post(NEXT).status_code == 404
    assert not Assignment.objects.exists()


def test_next_needs_login(project):
    assert api().post(NEXT).status_code == 401


def test_next_is_post_only(annotator):
    assert api(annotator).get(NEXT).status_code == 405


def test_submit_then_repeat(lease, annotator):
    client = api(annotator)
    body = {"label": GOOD, "time_spent_ms": 4200, "request_id": "req-1"}
    first = client.post(submit_url(lease["id"]), body, format="json")
    assert first.status_code == 201, first.json()
    again = client.post(submit_url(lease["id"]), body, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    annotation = Annotation.objects.get()
    assert (annotation.annotator, annotation.time_spent_ms) == (annotator, 4200)
    assert annotation.source == "human"
    assert first.json()["label"] == annotation.label
    assert annotation.item.human_label_count == 1 and annotation.item.lease_count == 0


def test_submit_stores_a_swapped_pair_unswapped(project, annotator, monkeypatch):
    ItemFactory(project=project)
    monkeypatch.setattr(engine._random, "random", lambda: 0.0)
    client = api(annotator)
    lease = client.post(NEXT).json()
    label = {"choice": "A", "strength": 1}
    response = client.post(submit_url(lease["id"]), {"label": label}, format="json")
    assert response.status_code == 201
    assert Annotation.objects.get().label["choice"] == "B"


@pytest.mark.parametrize("label", [{"choice": "B"}, {"choice": "B", "strength": None}])
def test_decided_label_without_strength_is_stored_as_strength_unknown(lease, annotator, label):
    response = api(annotator).post(submit_url(lease["id"]), {"label": label}, format="json")
    assert response.status_code == 201, response.json()
    annotation = Annotation.objects.get()
    assert annotation.label["strength"] is None
    assert (annotation.choice, annotation.strength) in {("A", None), ("B", None)}


def test_project_patched_to_require_strength_refuses_a_label_without_one(
    project, alice, lease, annotator
):
    patched = api(alice).patch(
        "/api/v1/projects/alices-pairs/", {"config": {"require_strength": True}}, format="json"
    )
    assert patched.status_code == 200, patched.json()
    assert patched.json()["config"]["require_strength"] is True
    client = api(annotator)
    response = client.post(submit_url(lease["id"]), {"label": {"choice": "A"}}, format="json")
    assert response.status_code == 400
    assert "asks how much better" in response.json()["label.strength"][0]
    assert not Annotation.objects.exists()
    label = {"choice": "A", "strength": 3}
    assert client.post(submit_url(lease["id"]), {"label": label}, format="json").status_code == 201


def test_time_spent_is_optional(lease, annotator):
    response = api(annotator).post(submit_url(lease["id"]), {"label": GOOD}, format="json")
    assert response.status_code == 201
    assert Annotation.objects.get().time_spent_ms is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "label"),
        ({"label": "A"}, "label"),
        ({"label": None}, "label"),
        ({"label": ["A"]}, "label"),
        ({"label": {}}, "label.choice"),
        ({"label": {"choice": "C", "strength": 1}}, "label.choice"),
        ({"label": {"choice": 1, "strength": 1}}, "label.choice"),
        ({"label": {"choice": "A", "strength": 0}}, "label.strength"),
        ({"label": {"choice": "A", "strength": 4}}, "label.strength"),
        ({"label": {"choice": "A", "strength": True}}, "label.strength"),
        ({"label": {"choice": "A", "strength": "lots"}}, "label.strength"),
        ({"label": {"choice": "A", "strength": 1, "rationale": 5}}, "label.rationale"),
        ({"label": {"choice": "A", "strength": 1, "confidence": 1}}, "label.confidence"),
        ({"label": {"choice": "A", "strength": 1, "rationale": "a\x00b"}}, "label"),
        ({"label": GOOD, "time_spent_ms": -1}, "time_spent_ms"),
        ({"label": GOOD, "time_spent_ms": 2**31}, "time_spent_ms"),
        ({"label": GOOD, "time_spent_ms": "soon"}, "time_spent_ms"),
        ({"label": GOOD, "request_id": "x" * 101}, "request_id"),
    ],
)
def test_bad_submit_is_400_naming_the_field(lease, annotator, body, field):
    response = api(annotator).post(submit_url(lease["id"]), body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors, errors
    assert errors[field] and all(isinstance(m, str) and m for m in errors[field])
    assert not Annotation.objects.exists()


def test_submit_must_be_json(lease, annotator):
    response = api(annotator).post(submit_url(lease["id"]), {"label": "A"})
    assert response.status_code == 415


def test_submit_of_someone_elses_assignment_is_404(lease, alice, bob):
    for user in (alice, bob):
        response = api(user).post(submit_url(lease["id"]), {"label": GOOD}, format="json")
        assert response.status_code == 404
    assert not Annotation.objects.exists()


@pytest.mark.parametrize("pk", [0, 999_999, 2**63])
def test_submit_of_no_such_assignment_is_404(annotator, pk):
    response = api(annotator).post(submit_url(pk), {"label": GOOD}, format="json")
    assert response.status_code == 404


def test_submit_after_leaving_the_project_is_404(project, lease, annotator):
    project.memberships.filter(user=annotator).delete()
    response = api(annotator).post(submit_url(lease["id"]), {"label": GOOD}, format="json")
    assert response.status_code == 404


def test_skip(lease, annotator):
    client = api(annotator)
    response = client.post(skip_url(lease["id"]), {"reason": "Not English"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "skipped"
    assert Assignment.objects.get().skip_reason == "Not English"
    assert client.post(NEXT).status_code == 204
    late = client.post(submit_url(lease["id"]), {"label": GOOD}, format="json")
    assert late.status_code == 409
    assert "skipped" in late.json()["non_field_errors"][0]


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}])
def test_skip_needs_a_reason(lease, annotator, body):
    response = api(annotator).post(skip_url(lease["id"]), body, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()


def test_skip_after_submit_is_409(lease, annotator):
    client = api(annotator)
    client.post(submit_url(lease["id"]), {"label": GOOD}, format="json")
    response = client.post(skip_url(lease["id"]), {"reason": "oops"}, format="json")
    assert response.status_code == 409


def test_skip_of_someone_elses_assignment_is_404(lease, bob):
    response = api(bob).post(skip_url(lease["id"]), {"reason": "mine now"}, format="json")
    assert response.status_code == 404
    assert Assignment.objects.get().status == "leased"


def test_schema_documents_the_assignment_operations(alice):
    response = api(alice).get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    next_op = paths["/api/v1/projects/{slug}/assignments/next/"]["post"]
    assert {"200", "204", "404"} <= set(next_op["responses"])
    submit = paths["/api/v1/assignments/{id}/submit/"]["post"]
    assert {"200", "201", "400", "404", "409"} <= set(submit["responses"])
    skip = paths["/api/v1/assignments/{id}/skip/"]["post"]
    assert {"200", "400", "404", "409"} <= set(skip["responses"])


def release_url(pk) -> str:
    return f"/api/v1/assignments/{pk}/release/"


PROGRESS = "/api/v1/projects/alices-pairs/assignments/progress/"


@pytest.fixture
def fresh_counts():
    # The project's counts are cached for seconds, and test databases reuse project ids.
    cache.clear()


def test_release_returns_the_item_to_the_pool(lease, annotator):
    client = api(annotator)
    response = client.post(release_url(lease["id"]))
    assert response.status_code == 200
    assert response.json()["status"] == "expired"
    assert Assignment.objects.get().status == "expired"
    again = client.post(release_url(lease["id"]))
    assert (again.status_code, again.json()["status"]) == (200, "expired")
    assert client.post(NEXT).json()["item"] == lease["item"]


def test_release_after_submit_is_409(lease, annotator):
    client = api(annotator)
    client.post(submit_url(lease["id"]), {"label": GOOD}, format="json")
    response = client.post(release_url(lease["id"]))
    assert response.status_code == 409
    assert "labeled already" in response.json()["non_field_errors"][0]


@pytest.mark.parametrize("pk", [0, 999_999, 2**63])
def test_release_of_no_such_assignment_is_404(annotator, pk):
    assert api(annotator).post(release_url(pk)).status_code == 404


def test_release_of_someone_elses_assignment_is_404(lease, alice, bob):
    for user in (alice, bob):
        assert api(user).post(release_url(lease["id"])).status_code == 404
    assert Assignment.objects.get().status == "leased"


def test_release_is_post_only(lease, annotator):
    assert api(annotator).get(release_url(lease["id"])).status_code == 405


def test_progress_counts_mine_and_the_projects(project, lease, annotator, fresh_counts):
    ItemFactory(project=project, external_id="q2")
    client = api(annotator)
    client.post(submit_url(lease["id"]), {"label": GOOD}, format="json")
    response = client.get(PROGRESS)
    assert response.status_code == 200
    assert response.json() == {"done": 1, "skipped": 0, "complete": 1, "total": 2}


def test_progress_of_a_member_who_did_nothing(project, alice, fresh_counts):
    ItemFactory(project=project)
    response = api(alice).get(PROGRESS)
    assert response.status_code == 200
    assert response.json() == {"done": 0, "skipped": 0, "complete": 0, "total": 1}


def test_progress_of_someone_elses_project_is_404(project, bob):
    assert api(bob).get(PROGRESS).status_code == 404


def test_progress_needs_login(project):
    assert api().get(PROGRESS).status_code in (401, 403)


def test_progress_is_get_only(annotator):
    assert api(annotator).post(PROGRESS).status_code == 405


def test_new_listwise_project_takes_tied_rankings_until_its_config_forbids_them(alice, annotator):
    alice.is_staff = True
    alice.save()
    created = api(alice).post(
        "/api/v1/projects/", {"name": "Rank", "kind": "listwise"}, format="json"
    )
    assert created.status_code == 201 and created.json()["config"]["allow_ties"] is True
    project = Project.objects.get(slug="rank")
    project.gold_rate = 0
    project.save()
    MembershipFactory(project=project, user=annotator, role=Role.ANNOTATOR)
    for n in range(2):
        ItemFactory(project=project, external_id=f"r{n}")
    client = api(annotator)
    lease = client.post("/api/v1/projects/rank/assignments/next/").json()
    tied = {"ranking": [lease["order"][0], lease["order"][1:]]}
    response = client.post(submit_url(lease["id"]), {"label": tied}, format="json")
    assert response.status_code == 201, response.json()
    assert Annotation.objects.get().label == tied

    forbid = {"config": {"allow_ties": False}}
    assert api(alice).patch("/api/v1/projects/rank/", forbid, format="json").status_code == 200
    lease = client.post("/api/v1/projects/rank/assignments/next/").json()
    tied = {"ranking": [lease["order"][0], lease["order"][1:]]}
    response = client.post(submit_url(lease["id"]), {"label": tied}, format="json")
    assert response.status_code == 400
    assert "does not allow ties" in response.json()["label.ranking[1]"][0]
    assert Annotation.objects.count() == 1
