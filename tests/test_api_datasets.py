"""API: dataset versions (create, list, read, download)."""

from __future__ import annotations

import io
import zipfile

import pytest

from annotate.models import Role
from feedback_api.models import DatasetVersion

from .factories import AnnotationFactory, ItemFactory, MembershipFactory, api

DATASETS = "/api/v1/projects/alices-pairs/datasets/"


@pytest.fixture
def labeled(project):
    for i in range(10):
        AnnotationFactory(item=ItemFactory(project=project, external_id=f"q{i}"))
    return project


@pytest.fixture
def built(alice, labeled, media, eager_celery, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api(alice).post(
            DATASETS, {"format": "pairwise", "split": {"test_fraction": 0.3}}, format="json"
        )
    assert response.status_code == 202, response.json()
    return DatasetVersion.objects.get()


def test_create_answers_202_and_the_worker_builds_it(
    alice, labeled, media, eager_celery, django_capture_on_commit_callbacks
):
    body = {
        "format": "pairwise",
        "filters": {"source": "human", "min_agreement": 0.5, "since": "2020-01-01"},
        "split": {"test_fraction": 0.2, "seed": 3},
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = api(alice).post(DATASETS, body, format="json")
    assert response.status_code == 202
    data = response.json()
    assert (data["number"], data["status"], data["format"]) == (1, "pending", "pairwise")
    assert data["filters"]["since"] == "2020-01-01"
    assert data["split"] == {"test_fraction": 0.2, "seed": 3, "by": "prompt"}
    version = api(alice).get(data["url"]).json()
    assert version["status"] == "done"
    assert version["progress"] == 1.0
    assert version["train_rows"] + version["test_rows"] == 10
    assert len(version["checksum"]) == 64
    assert version["card"].startswith("# Alice's pairs")
    assert version["created_by"] == "alice"
    names = {f["name"] for f in version["files"]}
    assert names == {
        "train.jsonl",
        "test.jsonl",
        "train.parquet",
        "test.parquet",
        "README.md",
        "archive",
    }


def test_create_with_defaults(alice, project, media):
    response = api(alice).post(DATASETS, {"format": "pairwise"}, format="json")
    assert response.status_code == 202
    data = response.json()
    assert data["filters"]["source"] == "both"
    assert data["filters"]["keep_single_label"] is True
    assert data["split"] == {"test_fraction": 0.1, "seed": 0, "by": "prompt"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "format"),
        ({"format": "csv"}, "format"),
        ({"format": "ratings"}, "format"),
        ({"format": "pairwise", "filters": {"source": "x"}}, "filters"),
        ({"format": "pairwise", "filters": {"min_agreement": 3}}, "filters"),
        ({"format": "pairwise", "filters": {"since": "soon"}}, "filters"),
        ({"format": "pairwise", "filters": {"annotators": "bob"}}, "filters"),
        ({"format": "pairwise", "split": {"test_fraction": 1.5}}, "split"),
        ({"format": "pairwise", "split": {"seed": -1}}, "split"),
        ({"format": "pairwise", "filters": "all"}, "filters"),
        ({"format": "pairwise", "filters": {"keep_single_label": "maybe"}}, "filters"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(alice, project, body, field):
    response = api(alice).post(DATASETS, body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not DatasetVersion.objects.exists()


def test_since_after_until_is_a_400(alice, project):
    body = {"format": "pairwise", "filters": {"since": "2025-02-01", "until": "2025-01-01"}}
    response = api(alice).post(DATASETS, body, format="json")
    assert response.status_code == 400
    assert "filters.until" in response.json()


def test_list_is_cursor_paginated(alice, project, media):
    for _ in range(5):
        api(alice).post(DATASETS, {"format": "pairwise"}, format="json")
    first = api(alice).get(DATASETS, {"page_size": 2}).json()
    assert [v["number"] for v in first["results"]] == [1, 2]
    numbers = [v["number"] for v in first["results"]]
    page = first
    while page["next"]:
        page = api(alice).get(page["next"]).json()
        numbers += [v["number"] for v in page["results"]]
    assert numbers == [1, 2, 3, 4, 5]
    newest = api(alice).get(DATASETS, {"ordering": "-id", "page_size": 1}).json()
    assert newest["results"][0]["number"] == 5
    assert api(alice).get(DATASETS, {"page_size": "x"}).status_code == 400
    assert api(alice).get(DATASETS, {"cursor": "garbage"}).status_code == 400


def test_download_each_file(alice, built):
    url = f"{DATASETS}1/download/"
    archive = api(alice).get(url)
    assert archive.status_code == 200
    assert 'filename="alices-pairs-v1-pairwise.zip"' in archive["Content-Disposition"]
    content = b"".join(archive.streaming_content)
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        assert "README.md" in zf.namelist()
    import hashlib

    assert hashlib.sha256(content).hexdigest() == built.checksum
    train = b"".join(api(alice).get(url, {"file": "train.jsonl"}).streaming_content)
    assert train.count(b"\n") == built.train_rows
    parquet = api(alice).get(url, {"file": "test.parquet"})
    assert b"".join(parquet.streaming_content)[:4] == b"PAR1"
    assert api(alice).get(url, {"file": "../settings.py"}).status_code == 400


def test_download_before_the_build_is_a_409(alice, project, media):
    api(alice).post(DATASETS, {"format": "pairwise"}, format="json")
    assert api(alice).get(f"{DATASETS}1/download/").status_code == 409


def test_unknown_version_is_404(alice, project):
    assert api(alice).get(f"{DATASETS}7/").status_code == 404
    assert api(alice).get(f"{DATASETS}{10**30}/").status_code == 404


def test_someone_elses_project_is_404(bob, built):
    assert api(bob).get(DATASETS).status_code == 404
    assert api(bob).post(DATASETS, {"format": "pairwise"}, format="json").status_code == 404
    assert api(bob).get(f"{DATASETS}1/").status_code == 404
    assert api(bob).get(f"{DATASETS}1/download/").status_code == 404


def test_annotators_cannot_use_datasets(annotator, built):
    assert api(annotator).get(DATASETS).status_code == 403
    assert api(annotator).post(DATASETS, {"format": "pairwise"}, format="json").status_code == 403
    assert api(annotator).get(f"{DATASETS}1/").status_code == 403
    assert api(annotator).get(f"{DATASETS}1/download/").status_code == 403


def test_researchers_can(project, bob, media):
    MembershipFactory(project=project, user=bob, role=Role.RESEARCHER)
    assert api(bob).post(DATASETS, {"format": "pairwise"}, format="json").status_code == 202


def test_anonymous_is_401(project):
    assert api().get(DATASETS).status_code == 401


def test_schema_describes_the_dataset_endpoints(alice):
    schema = api(alice).get("/api/v1/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    create = paths["/api/v1/projects/{slug}/datasets/"]["post"]
    assert "202" in create["responses"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "DatasetVersionCreateRequest"
    )
    download = paths["/api/v1/projects/{slug}/datasets/{number}/download/"]["get"]
    assert any(p["name"] == "file" for p in download["parameters"])
