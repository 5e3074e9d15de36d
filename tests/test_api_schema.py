"""The OpenAPI schema describes the real bodies: real responses validated against the response
schema the schema gives their operation and status code."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from jsonschema import Draft202012Validator
from rest_framework.test import APIClient

from annotate.models import Annotation, Role

from .factories import AnnotationFactory, ItemFactory, MembershipFactory

SLUG = "alices-pairs"
GOOD_FILE = '{"external_id": "f1", "prompt": "Q?", "responses": ["a", "b"]}\n'


def _nullable_as_json_schema(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema's null type, everywhere in a schema."""
    if isinstance(node, list):
        return [_nullable_as_json_schema(inner) for inner in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_as_json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


@pytest.fixture
def openapi(alice) -> dict:
    client = APIClient()
    client.force_authenticate(alice)
    response = client.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def conforms(openapi):
    """conforms(response, path_template, method): the body matches the documented schema."""
    components = _nullable_as_json_schema(openapi["components"])

    def check(response, path: str, method: str) -> None:
        responses = openapi["paths"][path][method]["responses"]
        code = str(response.status_code)
        assert code in responses, f"{method.upper()} {path}: {code} is not documented"
        body_schema = responses[code]["content"]["application/json"]["schema"]
        document = {**_nullable_as_json_schema(body_schema), "components": components}
        errors = sorted(
            Draft202012Validator(document).iter_errors(response.json()), key=lambda e: e.path
        )
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)

    return check


@pytest.fixture
def alice_client(alice) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def labeled(project, alice, charlie):
    MembershipFactory(project=project, user=charlie, role=Role.RESEARCHER)
    first, second = ItemFactory(project=project), ItemFactory(project=project)
    first.gold_label = {"choice": "A"}
    first.save()
    AnnotationFactory(item=first, annotator=charlie)
    AnnotationFactory(item=second, annotator=None, source=Annotation.Source.IMPORTED)
    return project


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/projects/",
        "/api/v1/projects/{slug}/",
        "/api/v1/projects/{slug}/stats/",
        "/api/v1/projects/{slug}/members/",
        "/api/v1/projects/{slug}/members/{username}/",
        "/api/v1/projects/{slug}/items/",
        "/api/v1/projects/{slug}/annotations/",
        "/api/v1/projects/{slug}/assignments/progress/",
    ],
)
def test_reads_match_the_schema(labeled, alice_client, conforms, path):
    url = path.format(slug=SLUG, username="charlie")
    response = alice_client.get(url, {"page_size": 1})
    assert response.status_code == 200
    conforms(response, path, "get")


def test_item_detail_matches_the_schema(labeled, alice_client, conforms):
    item = labeled.items.first()
    response = alice_client.get(f"/api/v1/projects/{SLUG}/items/{item.pk}/")
    conforms(response, "/api/v1/projects/{slug}/items/{id}/", "get")


def test_assignment_flow_matches_the_schema(labeled, alice_client, conforms):
    labeled.gold_rate = 0
    labeled.save()
    leased = alice_client.post(f"/api/v1/projects/{SLUG}/assignments/next/")
    conforms(leased, "/api/v1/projects/{slug}/assignments/next/", "post")
    pk = leased.json()["id"]
    label = {"choice": "A", "strength": 2, "rationale": ""}
    submitted = alice_client.post(f"/api/v1/assignments/{pk}/submit/", {"label": label}, "json")
    assert submitted.status_code == 201
    conforms(submitted, "/api/v1/assignments/{id}/submit/", "post")
    released = alice_client.post(f"/api/v1/assignments/{pk}/release/")
    assert released.status_code == 409
    conforms(released, "/api/v1/assignments/{id}/release/", "post")


def test_item_creation_and_its_report_match_the_schema(labeled, alice_client, conforms):
    path = "/api/v1/projects/{slug}/items/"
    body = {"items": [{"external_id": "n1", "prompt": "Q?", "responses": ["a", "b"]}]}
    created = alice_client.post(path.format(slug=SLUG), body, format="json")
    assert created.status_code == 201
    conforms(created, path, "post")
    refused = alice_client.post(path.format(slug=SLUG), {"items": [{"prompt": "Q"}]}, "json")
    assert (refused.status_code, refused.json()["ok"]) == (400, False)
    conforms(refused, path, "post")


def test_async_import_and_its_job_match_the_schema(
    labeled, alice_client, conforms, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    settings.IMPORT_ASYNC_BYTES, settings.CELERY_TASK_ALWAYS_EAGER = 1, False
    upload = SimpleUploadedFile("items.jsonl", GOOD_FILE.encode())
    started = alice_client.post(f"/api/v1/projects/{SLUG}/items/import/", {"file": upload})
    assert started.status_code == 202
    conforms(started, "/api/v1/projects/{slug}/items/import/", "post")
    polled = alice_client.get(started.json()["url"])
    conforms(polled, "/api/v1/projects/{slug}/imports/{id}/", "get")


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        ("post", "/api/v1/projects/", {"name": "", "kind": "nope"}, 400),
        ("patch", "/api/v1/projects/{slug}/", {"overlap": "many"}, 400),
        ("get", "/api/v1/projects/{slug}/items/", {"created_after": "yesterday"}, 400),
        ("get", "/api/v1/projects/{slug}/items/{id}/", None, 404),
        ("post", "/api/v1/projects/{slug}/members/", "not json", 415),
    ],
)
def test_error_bodies_match_the_schema(
    labeled, alice, alice_client, conforms, method, path, body, code
):
    alice.is_staff = True
    alice.save()
    url = path.format(slug=SLUG, id=2**40)
    if body == "not json":
        response = alice_client.post(url, "x=1", content_type="application/x-www-form-urlencoded")
    elif method == "get":
        response = alice_client.get(url, body)
    else:
        response = getattr(alice_client, method)(url, body, format="json")
    assert response.status_code == code
    conforms(response, path, method)
