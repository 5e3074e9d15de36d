"""POST /api/v1/projects/<slug>/items/import/: multipart upload, report, permissions."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.models import Annotation, ImportJob, Item, Role

from .factories import MembershipFactory

GOOD = (
    '{"external_id": "q1", "prompt": "Q1?", "responses": ["a", "b"]}\n'
    '{"id": "t1", "prompt": "Q2?", "chosen": "good", "rejected": "bad"}\n'
)
BAD = GOOD + '{"external_id": "q3", "prompt": "Q3?"}\n'
LABELED = (
    '{"external_id": "q1", "prompt": "Q1?", "responses": ["a", "b"], "label": {"choice": "B"}}\n'
    '{"id": "t1", "prompt": "Q2?", "chosen": "good", "rejected": "bad"}\n'
)


def url(slug: str) -> str:
    return f"/api/v1/projects/{slug}/items/import/"


def upload(content: str | bytes, name: str = "items.jsonl") -> SimpleUploadedFile:
    data = content.encode() if isinstance(content, str) else content
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


@pytest.fixture
def client_for():
    def make(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


def test_admin_imports_a_file(project, alice, client_for):
    response = client_for(alice).post(url(project.slug), {"file": upload(GOOD)}, format="multipart")
    assert response.status_code == 201
    body = response.json()
    assert body["ok"] is True
    assert (body["rows"], body["created"], body["duplicates"], body["invalid"]) == (2, 2, 0, 0)
    assert body["summary"] == "2 items imported, 0 already there (skipped)."
    assert body["errors"] == []
    assert Item.objects.filter(project=project).count() == 2


def test_token_authentication(project, alice):
    token = Token.objects.create(user=alice)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.post(url(project.slug), {"file": upload(GOOD)}, format="multipart")
    assert response.status_code == 201


def test_bad_file_returns_400_with_the_report(project, alice, client_for):
    response = client_for(alice).post(url(project.slug), {"file": upload(BAD)}, format="multipart")
    assert response.status_code == 400
    body = response.json()
    assert body["ok"] is False
    assert (body["rows"], body["invalid"], body["created"]) == (3, 1, 0)
    assert body["errors"] == [
        {"line": 3, "field": "responses", "message": body["errors"][0]["message"]}
    ]
    assert "is missing" in body["errors"][0]["message"]
    assert not Item.objects.exists()


def test_skip_invalid_imports_the_good_rows(project, alice, client_for):
    data = {"file": upload(BAD), "skip_invalid": "true"}
    response = client_for(alice).post(url(project.slug), data, format="multipart")
    assert response.status_code == 201
    body = response.json()
    assert (body["created"], body["invalid"], body["ok"]) == (2, 1, False)
    assert len(body["errors"]) == 1


def test_keep_labels(project, alice, client_for):
    data = {"file": upload(GOOD), "keep_labels": "true"}
    response = client_for(alice).post(url(project.slug), data, format="multipart")
    assert response.json()["labels"] == 1
    annotation = Annotation.objects.get()
    assert annotation.source == Annotation.Source.IMPORTED
    item = annotation.item
    assert item.responses[{"A": 0, "B": 1}[annotation.label["choice"]]]["text"] == "good"


def test_reimport_reports_duplicates(project, alice, client_for):
    client = client_for(alice)
    client.post(url(project.slug), {"file": upload(GOOD)}, format="multipart")
    response = client.post(url(project.slug), {"file": upload(GOOD)}, format="multipart")
    assert response.status_code == 201
    assert (response.json()["created"], response.json()["duplicates"]) == (0, 2)


def test_json_array_and_csv_uploads(project, alice, client_for):
    client = client_for(alice)
    rows = [{"external_id": "j1", "prompt": "Q", "responses": ["a", "b"]}]
    response = client.post(
        url(project.slug), {"file": upload(json.dumps(rows), "items.json")}, format="multipart"
    )
    assert response.status_code == 201
    csv_content = "external_id,prompt,response_1,response_2\nc1,Q,a,b\n"
    response = client.post(
        url(project.slug), {"file": upload(csv_content, "items.csv")}, format="multipart"
    )
    assert response.status_code == 201
    assert set(Item.objects.values_list("external_id", flat=True)) == {"j1", "c1"}


def test_format_field_overrides_the_file_name(project, alice, client_for):
    data = {"file": upload(GOOD, "export.txt"), "format": "jsonl"}
    response = client_for(alice).post(url(project.slug), data, format="multipart")
    assert response.status_code == 201


def test_unknown_format_is_a_validation_error(project, alice, client_for):
    data = {"file": upload(GOOD), "format": "parquet"}
    response = client_for(alice).post(url(project.slug), data, format="multipart")
    assert response.status_code == 400
    assert "format" in response.json()


def test_missing_file_is_a_validation_error(project, alice, client_for):
    response = client_for(alice).post(url(project.slug), {}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()


def test_whole_file_rejected_returns_400_with_fatal(project, alice, client_for):
    data = {"file": upload('{"not": "an array"}', "items.json")}
    response = client_for(alice).post(url(project.slug), data, format="multipart")
    assert response.status_code == 400
    body = response.json()
    assert "must hold one array" in body["fatal"]
    assert body["summary"].startswith("Nothing imported:")


def test_file_over_the_size_limit_is_413(project, alice, client_for, settings):
    settings.IMPORT_MAX_BYTES = 50
    response = client_for(alice).post(url(project.slug), {"file": upload(GOOD)}, format="multipart")
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "files of up to 50 bytes can be uploaded (IMPORT_MAX_BYTES)" in detail
    assert not Item.objects.exists()


def test_empty_file_returns_400(project, alice, client_for):
    response = client_for(alice).post(url(project.slug), {"file": upload("")}, format="multipart")
    assert response.status_code == 400


def test_someone_elses_project_is_404(project, bob, client_for):
    response = client_for(bob).post(url(project.slug), {"file": upload(GOOD)}, format="multipart")
    assert response.status_code == 404
    assert not Item.objects.exists()


def test_annotator_member_cannot_import(project, charlie, client_for):
    MembershipFactory(project=project, user=charlie, role=Role.ANNOTATOR)
    response = client_for(charlie).post(
        url(project.slug), {"file": upload(GOOD)}, format="multipart"
    )
    # A member may see the project, so a too-low role is a 403 or a 404, never an import.
    assert response.status_code in (403, 404)
    assert not Item.objects.exists()


def test_researcher_member_can_import(project, charlie, client_for):
    MembershipFactory(project=project, user=charlie, role=Role.RESEARCHER)
    response = client_for(charlie).post(
        url(project.slug), {"file": upload(GOOD)}, format="multipart"
    )
    assert response.status_code == 201


def test_superuser_can_import_anywhere(project, client_for):
    from .factories import UserFactory

    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    response = client_for(root).post(url(project.slug), {"file": upload(GOOD)}, format="multipart")
    assert response.status_code == 201


def test_anonymous_is_refused(project):
    response = APIClient().post(url(project.slug), {"file": upload(GOOD)}, format="multipart")
    assert response.status_code in (401, 403)
    assert not Item.objects.exists()


def test_unknown_project_is_404(alice, client_for):
    response = client_for(alice).post(url("nope"), {"file": upload(GOOD)}, format="multipart")
    assert response.status_code == 404


def test_get_is_not_allowed(project, alice, client_for):
    assert client_for(alice).get(url(project.slug)).status_code == 405


def test_json_body_is_unsupported(project, alice, client_for):
    response = client_for(alice).post(url(project.slug), {"file": GOOD}, format="json")
    assert response.status_code == 415


# Large files: a Celery job, polled at /imports/<id>/ ----------------------------------------


@pytest.fixture
def eager_jobs(eager_celery, media):
    """Background imports run in the test's process, their files in a temporary MEDIA_ROOT."""


def job_url(slug: str, pk) -> str:
    return f"/api/v1/projects/{slug}/imports/{pk}/"


def test_large_file_becomes_a_job_that_a_worker_runs(
    project, alice, client_for, settings, eager_jobs, django_capture_on_commit_callbacks
):
    settings.IMPORT_ASYNC_BYTES = 10
    client = client_for(alice)
    data = {"file": upload(GOOD, "export.txt"), "format": "jsonl"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url(project.slug), data, format="multipart")
    assert response.status_code == 202
    body = response.json()
    job = ImportJob.objects.get()
    assert body["id"] == job.pk
    assert body["status"] == "pending"
    assert (body["bytes_done"], body["size_bytes"], body["report"]) == (0, len(GOOD), {})
    assert body["url"] == f"http://testserver{job_url(project.slug, job.pk)}"
    assert response["Location"] == body["url"]
    assert Item.objects.filter(project=project).count() == 2

    polled = client.get(job_url(project.slug, job.pk))
    assert polled.status_code == 200
    done = polled.json()
    assert (done["status"], done["percent"], done["bytes_done"]) == ("done", 100, len(GOOD))
    assert done["report"]["created"] == 2
    assert done["report"]["summary"] == "2 items imported, 0 already there (skipped)."


def test_labels_for_existing_in_a_background_job_and_a_json_body(
    project, alice, client_for, settings, eager_jobs, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    assert (
        client.post(url(project.slug), {"file": upload(LABELED)}, format="multipart").status_code
        == 201
    )
    settings.IMPORT_ASYNC_BYTES = 10
    data = {"file": upload(LABELED), "labels_for_existing": "true"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url(project.slug), data, format="multipart")
    assert response.status_code == 202
    job = ImportJob.objects.get()
    assert job.labels_for_existing is True
    report = client.get(job_url(project.slug, job.pk)).json()["report"]
    assert (report["labels"], report["labels_already_there"]) == (2, 0)
    assert Annotation.objects.count() == 2
    # The same rows as a JSON body: nothing new; without the option, counted as skipped.
    rows = [json.loads(line) for line in LABELED.splitlines()]
    items = f"/api/v1/projects/{project.slug}/items/"
    body = {"items": rows, "labels_for_existing": True}
    again = client.post(items, body, format="json").json()
    assert (again["labels"], again["labels_already_there"]) == (0, 2)
    skipped = client.post(items, {"items": rows, "keep_labels": True}, format="json").json()
    assert (skipped["labels"], skipped["labels_skipped_existing"]) == (0, 2)
    assert Annotation.objects.count() == 2


def test_large_file_waits_for_a_worker(project, alice, client_for, settings, eager_jobs):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.IMPORT_ASYNC_BYTES = len(GOOD)
    response = client_for(alice).post(url(project.slug), {"file": upload(GOOD)}, format="multipart")
    assert response.status_code == 202
    assert (response.json()["status"], response.json()["percent"]) == ("pending", 0)
    assert not Item.objects.exists()


def test_file_just_under_the_async_size_is_imported_at_once(project, alice, client_for, settings):
    settings.IMPORT_ASYNC_BYTES = len(GOOD) + 1
    response = client_for(alice).post(url(project.slug), {"file": upload(GOOD)}, format="multipart")
    assert response.status_code == 201
    assert not ImportJob.objects.exists()


def test_large_file_over_the_size_limit_is_413(project, alice, client_for, settings, eager_jobs):
    settings.IMPORT_ASYNC_BYTES, settings.IMPORT_MAX_BYTES = 10, 50
    response = client_for(alice).post(url(project.slug), {"file": upload(GOOD)}, format="multipart")
    assert response.status_code == 413
    assert "files of up to 50 bytes" in response.json()["detail"]
    assert not ImportJob.objects.exists()


def test_failed_job_shows_its_report(project, alice, client_for, settings, eager_jobs):
    job = ImportJob.objects.create(
        project=project,
        filename="x.jsonl",
        file="imports/x.jsonl",
        size_bytes=100,
        bytes_done=40,
        status=ImportJob.Status.FAILED,
        report={"fatal": "import failed: disk gone"},
    )
    body = client_for(alice).get(job_url(project.slug, job.pk)).json()
    assert (body["status"], body["percent"]) == ("failed", 40)
    assert body["report"] == {"fatal": "import failed: disk gone"}


@pytest.fixture
def job(project):
    return ImportJob.objects.create(
        project=project, filename="x.jsonl", file="imports/x.jsonl", size_bytes=100
    )


def test_job_of_someone_elses_project_is_404(job, project, bob, bob_project, client_for):
    assert client_for(bob).get(job_url(project.slug, job.pk)).status_code == 404
    assert client_for(bob).get(job_url(bob_project.slug, job.pk)).status_code == 404


def test_annotator_cannot_see_import_jobs(job, project, charlie, client_for):
    MembershipFactory(project=project, user=charlie, role=Role.ANNOTATOR)
    assert client_for(charlie).get(job_url(project.slug, job.pk)).status_code == 403


@pytest.mark.parametrize("pk", [0, 999_999, 2**63])
def test_no_such_job_is_404(project, alice, client_for, pk):
    assert client_for(alice).get(job_url(project.slug, pk)).status_code == 404


NESTED = b"[" * 300 + b"]" * 300


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("items.json", rb'[{"prompt": "Q\ud800", "responses": ["a", "b"]}]', "lone surrogate"),
        ("items.csv", b'prompt,response_1,response_2,gold\nQ,a,b,' + NESTED + b"\n", "nested"),
        ("items.jsonl", b'{"prompt": "Q", "responses": ["a", "b"], "metadata": {"x": '
         + NESTED + b"}}\n", "nested deeper than 100 levels"),
    ],
)  # fmt: skip
def test_what_no_database_stores_is_a_json_400_and_imports_nothing(
    project, alice, client_for, name, content, message
):
    response = client_for(alice).post(
        url(project.slug), {"file": upload(content, name)}, format="multipart"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert (body["ok"], body["created"], body["invalid"]) == (False, 0, 1)
    assert message in body["errors"][0]["message"]
    assert not Item.objects.exists()
