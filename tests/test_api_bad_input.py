"""No bad input gives a 500: malformed and mistyped bodies, numbers past any column, unknown
and malformed query parameters, forged cursors. Each answer is a 4xx with a JSON body."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotate import assignment as engine
from annotate.models import Project, Role

from .factories import ItemFactory, MembershipFactory

HUGE = 2**70
WRITES = [
    ("post", "/api/v1/projects/"),
    ("patch", "/api/v1/projects/alices-pairs/"),
    ("post", "/api/v1/projects/alices-pairs/members/"),
    ("patch", "/api/v1/projects/alices-pairs/members/charlie/"),
    ("post", "/api/v1/projects/alices-pairs/items/"),
    ("post", "/api/v1/assignments/{lease}/submit/"),
    ("post", "/api/v1/assignments/{lease}/skip/"),
    ("post", "/api/v1/auth/token/"),
]
BODIES = [
    b"{not json",
    b"",
    b"[]",
    b'"text"',
    b"123",
    b"null",
    b'{"overlap": 1e400}',
    b'{"overlap": NaN}',
    b"\xff\xfe",
    # A lone surrogate in every text field: no database column stores it.
    json.dumps({name: "\ud800" for name in ("name", "guidelines", "username", "reason")}).encode(),
]
# Every field name the write endpoints know, each with values of every wrong type.
FIELDS = [
    "name", "kind", "config", "guidelines", "overlap", "username", "role", "items",
    "skip_invalid", "keep_labels", "label", "time_spent_ms", "request_id", "reason", "password",
]  # fmt: skip
WRONG = [HUGE, -HUGE, 1.5, True, None, "", "x" * 5000, [], {}, [HUGE], {"x": "\u0000"}]
READS = [
    "/api/v1/projects/alices-pairs/items/",
    "/api/v1/projects/alices-pairs/annotations/",
]
QUERIES = [
    {"cursor": "%%%"},
    {"cursor": "cD0xJm89OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"},
    {"page_size": str(HUGE)},
    {"page_size": "-1"},
    {"ordering": "name; drop table"},
    {"created_after": "9999-99-99"},
    {"created_after": "2024-01-01T00:00:00+99:00"},
    {"created_before": "0001-01-01T00:00:00-12:00"},
    {"min_human_labels": str(HUGE)},
    {"has_labels": "maybe"},
    {"external_id": "\x00"},
    {"item": "x" * 300},
    {"annotator": "\x00"},
    {"source": "robot"},
    {"unknown": "1", "another[]": "2"},
]


@pytest.fixture
def setup(project, alice, charlie):
    alice.is_staff = True
    alice.save()
    MembershipFactory(project=project, user=charlie, role=Role.RESEARCHER)
    project.gold_rate = 0
    project.save()
    ItemFactory(project=project)
    lease = engine.assignment_next(project=project, annotator=alice)
    client = APIClient()
    client.force_authenticate(alice)
    return client, lease.pk


def _answer_is_a_clean_refusal(response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    if response.content:
        assert response["Content-Type"].startswith("application/json")
        response.json()


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_malformed_bodies_are_refused(setup, method, path):
    client, lease = setup
    for body in BODIES:
        response = getattr(client, method)(
            path.format(lease=lease), body, content_type="application/json"
        )
        # An empty PATCH may change nothing: a 200 is a fine answer to it.
        if body == b"" and method == "patch" and response.status_code == 200:
            continue
        assert response.status_code != 200, body
        _answer_is_a_clean_refusal(response)


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_wrong_types_and_huge_numbers_are_refused(setup, method, path):
    client, lease = setup
    for field in FIELDS:
        for value in WRONG:
            response = getattr(client, method)(
                path.format(lease=lease), {field: value}, format="json"
            )
            # Some fields are optional: a body with one wrong optional field may still be refused
            # for another reason, but never with a server error.
            assert response.status_code < 500, (field, value, response.content[:300])


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("query", QUERIES, ids=lambda q: next(iter(q)))
def test_bad_query_parameters_are_refused_or_ignored(setup, path, query):
    client, _ = setup
    response = client.get(path, query)
    assert response.status_code in (200, 400), response.content[:300]
    response.json()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/projects/alices-pairs/items/{}/",
        "/api/v1/projects/alices-pairs/imports/{}/",
        "/api/v1/projects/alices-pairs/members/{}/",
    ],
)
@pytest.mark.parametrize("segment", [str(HUGE), "-1", "1.5", "null,null", "%C2%84", "%00", "é"])
def test_malformed_path_segments_are_json_404s(setup, path, segment):
    client, _ = setup
    response = client.get(path.format(segment))
    assert response.status_code == 404
    assert response.json()["detail"]


@pytest.mark.parametrize("action", ["submit", "skip", "release"])
@pytest.mark.parametrize("segment", [str(HUGE), "-1", "abc", "%00"])
def test_malformed_assignment_ids_are_json_404s(setup, action, segment):
    client, _ = setup
    response = client.post(f"/api/v1/assignments/{segment}/{action}/", {}, format="json")
    assert response.status_code == 404
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/projects/not%20a%20slug/",
        "/api/v1/projects/%00/items/",
        "/api/v1/projects/alices-pairs/datasets/1e9/",
        "/api/v1/no-such-endpoint/",
    ],
)
def test_malformed_api_urls_get_a_json_404(path, client, alice):
    client.force_login(alice)
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()


def test_malformed_page_urls_get_the_html_404(client, alice):
    client.force_login(alice)
    response = client.get("/projects/not%20a%20slug/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_body_over_the_upload_limit_is_a_json_400_and_creates_nothing(setup, settings, project):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client, _lease = setup
    items = [{"prompt": "x" * 100, "responses": ["a", "b"]} for _ in range(50)]
    before = project.items.count()
    response = client.post("/api/v1/projects/alices-pairs/items/", {"items": items}, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Request body too large."}
    assert project.items.count() == before


# JSON nested too deeply ---------------------------------------------------------------------
BOMB = b"[" * 100_000  # 100 KB that overflowed the stack of Python's json module: a 500


def _refused_as_too_deep(response) -> None:
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert "nested deeper than 100 levels" in response.json()["detail"]


def test_a_json_bomb_to_the_anonymous_token_endpoint_is_a_json_400(db):
    response = APIClient().post("/api/v1/auth/token/", BOMB, content_type="application/json")
    _refused_as_too_deep(response)


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_a_json_bomb_is_a_json_400_on_every_json_endpoint(setup, method, path):
    client, lease = setup
    for body in (BOMB, b"[" * 101 + b"]" * 101):
        response = getattr(client, method)(
            path.format(lease=lease), body, content_type="application/json"
        )
        _refused_as_too_deep(response)


def test_item_metadata_nested_300_levels_is_a_json_400_and_creates_nothing(setup, project):
    client, _ = setup
    deep = "[" * 300 + "]" * 300
    body = '{"items": [{"prompt": "Q?", "responses": ["a", "b"], "metadata": {"x": DEEP}}]}'
    body = body.replace("DEEP", deep)
    before = project.items.count()
    response = client.post(
        "/api/v1/projects/alices-pairs/items/", body, content_type="application/json"
    )
    _refused_as_too_deep(response)
    assert project.items.count() == before


def test_metadata_nested_to_the_limit_is_stored(setup, project):
    client, _ = setup
    deep = [[]]
    for _ in range(94):  # {"items": [{"metadata": {"x": ...}}]}: 100 levels in all
        deep = [deep]
    item = {"external_id": "deep", "prompt": "Q?", "responses": ["a", "b"], "metadata": {"x": deep}}
    response = client.post("/api/v1/projects/alices-pairs/items/", {"items": [item]}, format="json")
    assert response.status_code == 201, response.content[:300]
    assert project.items.get(external_id="deep").metadata == {"x": deep}


def test_an_unexpected_error_under_the_api_is_a_json_500(alice, project, monkeypatch):
    def fail(project):
        raise RuntimeError("a bug")

    monkeypatch.setattr("feedback_api.views.selectors.project_stats", fail)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(alice)
    response = client.get("/api/v1/projects/alices-pairs/stats/")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Server error."}


def test_an_unexpected_error_on_a_page_is_the_html_500(alice, project, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("annotate.views.project_for_user", fail)
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    response = client.get("/projects/alices-pairs/")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


# The schema and the behaviour agree ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/projects/alices-pairs/items/", "external_id"),
        ("/api/v1/projects/alices-pairs/annotations/", "source"),
        ("/api/v1/projects/alices-pairs/annotations/", "item"),
        ("/api/v1/projects/alices-pairs/annotations/", "annotator"),
    ],
)
def test_an_empty_filter_is_refused_as_its_schema_says(setup, path, parameter):
    client, _ = setup
    response = client.get(path, {parameter: ""})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert parameter in response.json()


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/api/v1/projects/",
         {"name": "N", "kind": "pairwise", "guidelines": 0}, "guidelines"),
        ("post", "/api/v1/projects/", {"name": 0, "kind": "pairwise"}, "name"),
        ("patch", "/api/v1/projects/alices-pairs/", {"guidelines": 0}, "guidelines"),
        ("post", "/api/v1/projects/alices-pairs/datasets/",
         {"format": "pairwise", "split": {"test_fraction": False}}, "split"),
    ],
)  # fmt: skip
def test_a_number_for_text_or_a_boolean_for_a_number_is_refused(setup, method, path, body, field):
    client, _ = setup
    before = (Project.objects.values_list("guidelines", flat=True).first(), Project.objects.count())
    response = getattr(client, method)(path, body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    after = (Project.objects.values_list("guidelines", flat=True).first(), Project.objects.count())
    assert after == before


def test_a_reason_of_separator_characters_is_blank_in_the_schema_too(setup, alice):
    client, lease = setup
    response = client.post(f"/api/v1/assignments/{lease}/skip/", {"reason": "\x1f"}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()
    schema = client.get("/api/v1/schema/", {"format": "json"}).json()
    reason = schema["components"]["schemas"]["AssignmentSkipRequest"]["properties"]["reason"]
    # JSON Schema reads the pattern as ECMA 262, where \s lacks U+001C-U+001F and U+0085.
    ecma = re.compile(reason["pattern"].replace(r"\s", ECMA_SPACE), re.ASCII)
    assert not ecma.search("\x1f") and not ecma.search(" \x85\t")
    assert ecma.search("too hard") and ecma.search("\ufeff")


ECMA_SPACE = r"\t\n\v\f\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
