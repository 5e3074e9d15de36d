"""API: projects (list, create, read, update), stats and members."""

import pytest

from annotate.models import Membership, Project, Role

from .factories import AnnotationFactory, ItemFactory, MembershipFactory, UserFactory, api


@pytest.fixture
def researcher(project):
    user = UserFactory(username="rita")
    MembershipFactory(project=project, user=user, role=Role.RESEARCHER)
    return user


# Projects -----------------------------------------------------------------------------------


def test_list_shows_only_my_projects_with_my_role(alice, project, bob_project):
    response = api(alice).get("/api/v1/projects/")
    assert response.status_code == 200
    assert [(p["slug"], p["role"]) for p in response.json()] == [("alices-pairs", "admin")]


def test_superuser_sees_every_project_as_admin(project, bob_project):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    response = api(root).get("/api/v1/projects/")
    assert {p["slug"]: p["role"] for p in response.json()} == {
        "alices-pairs": "admin",
        "bobs-pairs": "admin",
    }


def test_list_without_credentials_is_401(db):
    assert api().get("/api/v1/projects/").status_code == 401


def test_project_list_query_count_does_not_grow(alice, django_assert_max_num_queries):
    for n in range(5):
        MembershipFactory(project__name=f"P{n}", user=alice, role=Role.ADMIN)
    with django_assert_max_num_queries(3):
        assert len(api(alice).get("/api/v1/projects/").json()) == 5


def test_detail(alice, project):
    response = api(alice).get("/api/v1/projects/alices-pairs/")
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "pairwise"
    assert body["config"] == {
        "allow_tie": True,
        "require_strength": False,
        "require_rationale": False,
    }
    assert body["role"] == "admin"


def test_detail_of_someone_elses_project_is_404(bob, project):
    assert api(bob).get("/api/v1/projects/alices-pairs/").status_code == 404


def test_detail_of_missing_project_is_404(alice):
    assert api(alice).get("/api/v1/projects/nope/").status_code == 404


def test_staff_user_creates_a_project_and_becomes_admin(alice):
    alice.is_staff = True
    alice.save()
    response = api(alice).post(
        "/api/v1/projects/",
        {"name": "Rank it", "kind": "listwise", "config": {"max_responses": 4}, "overlap": 3},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["slug"] == "rank-it"
    assert body["config"] == {"max_responses": 4, "allow_ties": True}
    assert body["overlap"] == 3
    assert body["role"] == "admin"
    assert Membership.objects.get(project__slug="rank-it").user == alice


def test_non_staff_user_cannot_create_projects(alice):
    response = api(alice).post(
        "/api/v1/projects/", {"name": "Mine", "kind": "pairwise"}, format="json"
    )
    assert response.status_code == 403
    assert not Project.objects.filter(name="Mine").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "pairwise"}, "name"),
        ({"name": "X", "kind": "tree"}, "kind"),
        ({"name": "X", "kind": "pairwise", "overlap": 0}, "overlap"),
        ({"name": "X", "kind": "pairwise", "overlap": "many"}, "overlap"),
        ({"name": "X", "kind": "pairwise", "config": {"allow_tie": "yes"}}, "config"),
        ({"name": "X", "kind": "pairwise", "config": {"colour": 1}}, "config"),
        ({"name": "X", "kind": "pairwise", "config": []}, "config"),
        ({"name": "X", "kind": "spans", "config": {"taxonomy": ["a\x00b"]}}, "config"),
        ({"name": "!!!", "kind": "pairwise"}, "name"),
        ({"name": "Alice's pairs", "kind": "pairwise"}, "name"),
        ({"name": "a\x00b", "kind": "pairwise"}, "name"),
    ],
)
def test_create_with_bad_input_is_400_naming_the_field(alice, project, body, field):
    alice.is_staff = True
    alice.save()
    response = api(alice).post("/api/v1/projects/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_create_with_malformed_json_is_400(alice):
    alice.is_staff = True
    alice.save()
    response = api(alice).post("/api/v1/projects/", b'{"name": ', content_type="application/json")
    assert response.status_code == 400
    assert "detail" in response.json()


def test_create_with_form_body_is_415(alice):
    alice.is_staff = True
    alice.save()
    response = api(alice).post("/api/v1/projects/", {"name": "X", "kind": "pairwise"})
    assert response.status_code == 415


def test_admin_updates_config_guidelines_and_overlap(alice, project):
    response = api(alice).patch(
        "/api/v1/projects/alices-pairs/",
        {"config": {"allow_tie": False}, "guidelines": "Be kind.", "overlap": 2},
        format="json",
    )
    assert response.status_code == 200, response.json()
    project.refresh_from_db()
    assert project.config == {
        "allow_tie": False,
        "require_strength": False,
        "require_rationale": False,
    }
    assert (project.guidelines, project.overlap) == ("Be kind.", 2)


def test_update_leaves_omitted_settings_alone(alice, project):
    before = project.config
    response = api(alice).patch("/api/v1/projects/alices-pairs/", {"overlap": 5}, format="json")
    assert response.status_code == 200
    project.refresh_from_db()
    assert (project.config, project.overlap) == (before, 5)


def test_update_rejects_a_config_the_kind_rejects(alice, project):
    response = api(alice).patch(
        "/api/v1/projects/alices-pairs/", {"config": {"allow_tie": 3}}, format="json"
    )
    assert response.status_code == 400
    assert "allow_tie" in response.json()["config"][0]


def test_researcher_cannot_update_project(researcher, project):
    response = api(researcher).patch(
        "/api/v1/projects/alices-pairs/", {"overlap": 5}, format="json"
    )
    assert response.status_code == 403


def test_stranger_cannot_update_project(bob, project):
    response = api(bob).patch("/api/v1/projects/alices-pairs/", {"overlap": 5}, format="json")
    assert response.status_code == 404


# Stats --------------------------------------------------------------------------------------


def test_stats_count_items_labels_and_members(alice, annotator, project):
    judged = ItemFactory(project=project)
    labeled = ItemFactory(project=project)
    ItemFactory(project=project)
    AnnotationFactory(item=labeled, annotator=alice)
    AnnotationFactory(item=labeled, annotator=annotator)
    AnnotationFactory(item=judged, source="imported", annotator=None)
    response = api(annotator).get("/api/v1/projects/alices-pairs/stats/")
    assert response.status_code == 200
    assert response.json() == {
        "items": 3,
        "labeled_items": 2,
        "human_labeled_items": 1,
        "annotations": {"human": 2, "judge": 0, "imported": 1, "total": 3},
        "members": {"annotator": 1, "researcher": 0, "admin": 1},
    }


def test_stats_of_someone_elses_project_is_404(bob, project):
    assert api(bob).get("/api/v1/projects/alices-pairs/stats/").status_code == 404


# Members ------------------------------------------------------------------------------------


def test_researcher_lists_members(researcher, annotator, project):
    response = api(researcher).get("/api/v1/projects/alices-pairs/members/")
    assert response.status_code == 200
    assert [(m["username"], m["role"]) for m in response.json()] == [
        ("alice", "admin"),
        ("charlie", "annotator"),
        ("rita", "researcher"),
    ]


def test_annotator_cannot_list_members(annotator, project):
    assert api(annotator).get("/api/v1/projects/alices-pairs/members/").status_code == 403


def test_stranger_cannot_list_members(bob, project):
    assert api(bob).get("/api/v1/projects/alices-pairs/members/").status_code == 404


def test_admin_adds_a_member(alice, bob, project):
    response = api(alice).post(
        "/api/v1/projects/alices-pairs/members/",
        {"username": "bob", "role": "researcher"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["role"] == "researcher"
    assert project.role_of(bob) == "researcher"


def test_adding_an_existing_member_changes_the_role(alice, annotator, project):
    response = api(alice).post(
        "/api/v1/projects/alices-pairs/members/",
        {"username": "charlie", "role": "researcher"},
        format="json",
    )
    assert response.status_code == 200
    assert project.role_of(annotator) == "researcher"


def test_annotator_cannot_add_members(annotator, bob, project):
    response = api(annotator).post(
        "/api/v1/projects/alices-pairs/members/", {"username": "bob"}, format="json"
    )
    assert response.status_code == 403
    assert project.role_of(bob) is None


def test_stranger_cannot_add_members(bob, project):
    response = api(bob).post(
        "/api/v1/projects/alices-pairs/members/",
        {"username": "bob", "role": "admin"},
        format="json",
    )
    assert response.status_code == 404
    assert project.role_of(bob) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "nobody"}, "username"),
        ({"username": "bob", "role": "owner"}, "role"),
        ({"role": "admin"}, "username"),
    ],
)
def test_add_member_with_bad_input_is_400(alice, bob, project, body, field):
    response = api(alice).post("/api/v1/projects/alices-pairs/members/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_admin_changes_a_role(alice, annotator, project):
    response = api(alice).patch(
        "/api/v1/projects/alices-pairs/members/charlie/", {"role": "admin"}, format="json"
    )
    assert response.status_code == 200
    assert project.role_of(annotator) == "admin"


def test_last_admin_cannot_step_down(alice, project):
    response = api(alice).patch(
        "/api/v1/projects/alices-pairs/members/alice/", {"role": "annotator"}, format="json"
    )
    assert response.status_code == 400
    assert "admin" in response.json()["role"][0]
    assert project.role_of(alice) == "admin"


def test_changing_the_role_of_a_non_member_is_404(alice, bob, project):
    response = api(alice).patch(
        "/api/v1/projects/alices-pairs/members/bob/", {"role": "admin"}, format="json"
    )
    assert response.status_code == 404


def test_read_one_member(researcher, project):
    response = api(researcher).get("/api/v1/projects/alices-pairs/members/alice/")
    assert response.status_code == 200
    assert response.json()["role"] == "admin"


def test_admin_removes_a_member(alice, annotator, project):
    response = api(alice).delete("/api/v1/projects/alices-pairs/members/charlie/")
    assert response.status_code == 204
    assert project.role_of(annotator) is None


def test_last_admin_cannot_leave(alice, project):
    response = api(alice).delete("/api/v1/projects/alices-pairs/members/alice/")
    assert response.status_code == 400
    assert project.role_of(alice) == "admin"


def test_researcher_cannot_remove_members(researcher, annotator, project):
    response = api(researcher).delete("/api/v1/projects/alices-pairs/members/charlie/")
    assert response.status_code == 403
    assert project.role_of(annotator) == "annotator"


def test_stranger_cannot_remove_members(bob, annotator, project):
    response = api(bob).delete("/api/v1/projects/alices-pairs/members/charlie/")
    assert response.status_code == 404
    assert project.role_of(annotator) == "annotator"
