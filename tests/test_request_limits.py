"""Oversized request bodies are refused (413) before they reach the disk: by their Content-Length
before anything reads them, and by the bytes of their files as those arrive."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from annotate.models import ImportJob, Item

GOOD = '{"external_id": "q1", "prompt": "Hi?", "responses": ["a", "b"]}\n'
BOUNDARY = "limitsboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(size: int) -> bytes:
    """A form with one file field of `size` bytes."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="items.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return head.encode() + b"x" * size + f"\r\n--{BOUNDARY}--\r\n".encode()


def declaring(client, path: str, length: int, **extra):
    """POST a small body that says it is `length` bytes long. The test client's input raises if
    more than the small body is read, so a 413 here shows the body was refused unread."""
    return client.generic(
        "POST", path, multipart(10), MULTIPART, CONTENT_LENGTH=str(length), **extra
    )


def import_page(project) -> str:
    return reverse("annotate:item-import", args=[project.slug])


def import_api(project) -> str:
    return f"/api/v1/projects/{project.slug}/items/import/"


@pytest.fixture
def temp_files(settings, tmp_path, monkeypatch):
    """Uploads go to a temporary file in a folder of their own at once (nothing in memory), and
    every byte written to such a file is counted."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    written = []
    keep = TemporaryFileUploadHandler.receive_data_chunk

    def counting(self, raw_data, start):
        written.append(len(raw_data))
        return keep(self, raw_data, start)

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", counting)
    return folder, written


def test_an_anonymous_200_mb_post_to_login_is_refused_unread_before_csrf(db):
    client = Client(enforce_csrf_checks=True)
    response = declaring(client, "/login/", 200 * 1024 * 1024)
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/plain")
    message = response.content.decode()
    assert "200.0 MB" in message
    assert "requests without a login may send up to 1.0 MB" in message


def test_an_anonymous_api_request_over_the_small_cap_is_a_json_413(client, db, settings):
    settings.ANONYMOUS_REQUEST_MAX_BYTES = 1000
    response = declaring(client, "/api/v1/auth/token/", 5000)
    assert response.status_code == 413
    assert "ANONYMOUS_REQUEST_MAX_BYTES" in response.json()["detail"]


def test_a_small_anonymous_post_is_not_refused(client, db, settings):
    settings.ANONYMOUS_REQUEST_MAX_BYTES = 1000
    response = client.post("/login/", {"username": "nobody", "password": "wrong"})
    assert response.status_code == 200  # the form again, with its error


def test_a_logged_in_upload_over_the_import_limit_is_refused_unread(
    client, alice, project, settings
):
    settings.IMPORT_MAX_BYTES = 20 * 1024 * 1024
    client.force_login(alice)
    body_limit = settings.IMPORT_MAX_BYTES + settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = declaring(client, import_page(project), body_limit + 1)
    assert response.status_code == 413
    assert "files of up to 20.0 MB can be uploaded (IMPORT_MAX_BYTES)" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_an_api_token_gets_the_import_limit_and_a_wrong_one_the_small_cap(
    client, alice, project, settings, media
):
    settings.ANONYMOUS_REQUEST_MAX_BYTES = 100
    key = Token.objects.create(user=alice).key
    data = {"file": SimpleUploadedFile("items.jsonl", GOOD.encode() * 4)}
    response = client.post(import_api(project), data, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 201, response.content
    assert Item.objects.count() == 1
    response = client.post(import_api(project), data, HTTP_AUTHORIZATION="Token not-a-key")
    assert response.status_code == 413


@pytest.mark.parametrize("where", ["page", "api"])
def test_an_upload_is_stopped_at_the_limit_before_more_reaches_disk(
    client, alice, project, settings, media, temp_files, where
):
    folder, written = temp_files
    settings.IMPORT_MAX_BYTES = 100_000
    client.force_login(alice)
    # Its Content-Length is within the body's limit (the file plus form fields): the upload
    # handler is what stops the file.
    url = import_page(project) if where == "page" else import_api(project)
    response = client.generic("POST", url, multipart(1_000_000), MULTIPART)
    assert response.status_code == 413
    assert "files of up to 97.7 KB" in response.content.decode()
    assert sum(written) <= settings.IMPORT_MAX_BYTES
    assert list(folder.iterdir()) == []
    assert not ImportJob.objects.exists()
    assert not (media / "imports").exists()


def test_an_upload_within_the_limit_still_goes_through_a_temporary_file(
    client, alice, project, settings, media, temp_files
):
    folder, written = temp_files
    client.force_login(alice)
    response = client.post(
        import_page(project), {"file": SimpleUploadedFile("i.jsonl", GOOD.encode())}
    )
    assert response.status_code == 200
    assert response.context["report"]["created"] == 1
    assert sum(written) == len(GOOD)


def test_a_body_without_content_length_is_not_read(client, alice, project, media, temp_files):
    # A chunked upload: under WSGI Django reads a body only as far as its Content-Length.
    folder, written = temp_files
    client.force_login(alice)
    body = multipart(5_000_000)
    response = client.generic(
        "POST",
        import_page(project),
        b"",
        MULTIPART,
        CONTENT_TYPE=MULTIPART,
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": io.BytesIO(body)},
    )
    assert response.status_code == 200
    assert "file" in response.context["form"].errors
    assert written == []
    assert list(folder.iterdir()) == []
