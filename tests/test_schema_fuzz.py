"""Schemathesis against the generated OpenAPI schema, in-process through the WSGI app: every
operation, with a researcher-and-admin's token on a project with items and labels, must answer
without a server error and with a body and status code that the schema describes."""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from annotate import assignment as engine
from annotate.models import Annotation, Role

from .factories import (
    AnnotationFactory,
    ItemFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
)

pytestmark = pytest.mark.slow

SLUG = "alices-pairs"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _openapi() -> dict:
    # The schema the app serves at /api/v1/schema/, made without a request (no login needed).
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document, renderer_context={}))


schema = schemathesis.openapi.from_dict(_openapi())
schema.app = get_wsgi_application()
DATASETS = r"/datasets/\{number\}/"


@pytest.fixture
def keep_connections():
    # As Django's test client does: the WSGI handler would close the test's connection, which
    # is inside the test transaction, at the end of every request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def token(db, keep_connections) -> str:
    alice = UserFactory(username="alice", is_staff=True)
    charlie = UserFactory(username="charlie")
    project = ProjectFactory(name="Alice's pairs", slug=SLUG)
    MembershipFactory(project=project, user=alice, role=Role.ADMIN)
    MembershipFactory(project=project, user=charlie, role=Role.RESEARCHER)
    items = [ItemFactory(project=project, external_id=f"q{i}") for i in range(3)]
    AnnotationFactory(item=items[0], annotator=charlie)
    AnnotationFactory(item=items[1], annotator=None, source=Annotation.Source.IMPORTED)
    project.gold_rate = 0
    project.save()
    # A real lease (the engine keeps the item's lease counter), for submit, skip and release.
    engine.assignment_next(project=project, annotator=alice)
    return Token.objects.create(user=alice).key


def _aim_at_the_project(case) -> None:
    # Random slugs only ever meet a 404: aim at the project that has data behind it.
    if "slug" in (case.path_parameters or {}):
        case.path_parameters["slug"] = SLUG


def _call_and_validate(case, token: str) -> None:
    _aim_at_the_project(case)
    # call_and_validate raises on any failed check (server error, body not as the schema says).
    response = case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)
    assert response.status_code < 500, response.text


BOUNDED = settings(
    max_examples=15,
    deadline=None,
    # The fixture's data is shared by an operation's examples on purpose; no example database.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
    database=None,
)


@schema.exclude(path_regex=DATASETS).parametrize()
@BOUNDED
def test_api_operation(case, token):
    _call_and_validate(case, token)


@schema.include(path_regex=DATASETS).parametrize()
@BOUNDED
def test_dataset_operation(case, token):
    _call_and_validate(case, token)
