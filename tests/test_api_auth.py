"""API authentication: tokens by API and on the settings page, session auth for the browser."""

import time
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from feedback_api import authentication

from .factories import MembershipFactory, UserFactory

PASSWORD = "correct horse battery"  # tests/factories.py


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


# By API -------------------------------------------------------------------------------------


def test_password_gets_a_token_that_authenticates(alice, project):
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["username"] == "alice"
    assert body["token"] == Token.objects.get(user=alice).key
    projects = token_client(body["token"]).get("/api/v1/projects/")
    assert projects.status_code == 200
    assert [p["slug"] for p in projects.json()] == ["alices-pairs"]


def test_asking_again_returns_the_same_token(alice):
    client = APIClient()
    credentials = {"username": "alice", "password": PASSWORD}
    first = client.post("/api/v1/auth/token/", credentials, format="json").json()["token"]
    again = client.post("/api/v1/auth/token/", credentials, format="json")
    assert again.status_code == 200
    assert again.json()["token"] == first


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice", "password": "wrong"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "alice"},
        {"username": "", "password": ""},
        {"username": "a\x00", "password": PASSWORD},
    ],
)
def test_bad_credentials_are_400_and_make_no_token(alice, body):
    response = APIClient().post("/api/v1/auth/token/", body, format="json")
    assert response.status_code == 400
    assert response.json()
    assert not Token.objects.exists()


def test_inactive_user_gets_no_token(alice):
    alice.is_active = False
    alice.save()
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 400


def test_obtaining_a_token_ignores_a_stale_token_header(alice):
    client = token_client("0" * 40)
    response = client.post(
        "/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 201


def test_rotate_replaces_the_token(alice):
    old = Token.objects.create(user=alice).key
    response = token_client(old).post("/api/v1/auth/token/rotate/")
    assert response.status_code == 201
    new = response.json()["token"]
    assert new != old
    assert token_client(old).get("/api/v1/projects/").status_code == 401
    assert token_client(new).get("/api/v1/projects/").status_code == 200


def test_revoke_deletes_the_token(alice):
    key = Token.objects.create(user=alice).key
    assert token_client(key).delete("/api/v1/auth/token/").status_code == 204
    assert not Token.objects.filter(user=alice).exists()
    assert token_client(key).get("/api/v1/projects/").status_code == 401


def test_revoke_and_rotate_need_authentication(db):
    assert APIClient().delete("/api/v1/auth/token/").status_code == 401
    assert APIClient().post("/api/v1/auth/token/rotate/").status_code == 401


def test_unknown_token_is_401(db):
    assert token_client("f" * 40).get("/api/v1/projects/").status_code == 401


def test_token_sees_only_its_users_projects(bob, project, bob_project):
    key = Token.objects.create(user=bob).key
    client = token_client(key)
    assert client.get("/api/v1/projects/alices-pairs/").status_code == 404
    assert client.get("/api/v1/projects/bobs-pairs/").status_code == 200


# Session auth -------------------------------------------------------------------------------


def test_browser_session_authenticates(alice, project):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get("/api/v1/projects/alices-pairs/").status_code == 200


def test_session_writes_need_the_csrf_token(alice, project):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.patch("/api/v1/projects/alices-pairs/", {"overlap": 2}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


# The settings page --------------------------------------------------------------------------


@pytest.fixture
def browser(alice):
    client = Client()
    client.force_login(alice)
    return client


def test_page_needs_login(db):
    response = Client().get("/api/v1/tokens/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_page_without_a_token_offers_to_create_one(browser):
    response = browser.get("/api/v1/tokens/")
    assert response.status_code == 200
    assert b"You have no API token" in response.content


def test_page_creates_a_token_and_shows_it_once(alice, browser):
    response = browser.post("/api/v1/tokens/create/")
    assert response.status_code == 302
    key = Token.objects.get(user=alice).key
    assert key.encode() in browser.get("/api/v1/tokens/").content
    again = browser.get("/api/v1/tokens/").content
    assert key.encode() not in again
    assert key[:6].encode() in again


def test_page_replaces_a_token(alice, browser):
    old = Token.objects.create(user=alice).key
    browser.post("/api/v1/tokens/create/")
    new = Token.objects.get(user=alice).key
    assert new != old
    assert new.encode() in browser.get("/api/v1/tokens/").content


def test_page_revokes_the_token(alice, browser):
    Token.objects.create(user=alice)
    assert browser.post("/api/v1/tokens/revoke/").status_code == 302
    assert not Token.objects.filter(user=alice).exists()


def test_page_actions_need_post(alice, browser):
    Token.objects.create(user=alice)
    assert browser.get("/api/v1/tokens/revoke/").status_code == 405
    assert browser.get("/api/v1/tokens/create/").status_code == 405
    assert Token.objects.filter(user=alice).exists()


def test_page_actions_need_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    Token.objects.create(user=alice)
    assert client.post("/api/v1/tokens/revoke/").status_code == 403
    assert Token.objects.filter(user=alice).exists()


def test_page_never_shows_someone_elses_token(alice, bob, browser):
    MembershipFactory(user=bob)
    bobs = Token.objects.create(user=bob).key
    assert bobs[:6].encode() not in browser.get("/api/v1/tokens/").content
    browser.post("/api/v1/tokens/revoke/")
    assert Token.objects.filter(key=bobs).exists()


def test_staff_user_creates_a_project_with_a_token(db):
    staff = UserFactory(username="sam", is_staff=True)
    key = Token.objects.create(user=staff).key
    response = token_client(key).post(
        "/api/v1/projects/", {"name": "Sam's", "kind": "ratings"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["role"] == "admin"


# A token's user is remembered for a few seconds per process ---------------------------------


def _token_queries(client, path="/api/v1/projects/") -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200
    return sum("authtoken_token" in query["sql"] for query in ctx.captured_queries)


def test_a_known_token_is_not_looked_up_again(alice):
    client = token_client(Token.objects.create(user=alice).key)
    assert _token_queries(client) == 1
    assert _token_queries(client) == 0


def test_revoke_ends_a_remembered_token_at_once(alice):
    key = Token.objects.create(user=alice).key
    assert token_client(key).get("/api/v1/projects/").status_code == 200
    assert token_client(key).delete("/api/v1/auth/token/").status_code == 204
    assert token_client(key).get("/api/v1/projects/").status_code == 401


def test_rotate_ends_a_remembered_token_at_once(alice):
    key = Token.objects.create(user=alice).key
    assert token_client(key).get("/api/v1/projects/").status_code == 200
    assert token_client(key).post("/api/v1/auth/token/rotate/").status_code == 201
    assert token_client(key).get("/api/v1/projects/").status_code == 401


def test_page_revoke_ends_a_remembered_token_at_once(alice, browser):
    key = Token.objects.create(user=alice).key
    assert token_client(key).get("/api/v1/projects/").status_code == 200
    browser.post("/api/v1/tokens/revoke/")
    assert token_client(key).get("/api/v1/projects/").status_code == 401


def test_deactivated_user_is_refused_at_once(alice):
    key = Token.objects.create(user=alice).key
    assert token_client(key).get("/api/v1/projects/").status_code == 200
    alice.is_active = False
    alice.save()
    assert token_client(key).get("/api/v1/projects/").status_code == 401


def test_revoke_elsewhere_ends_within_the_cache_time(alice, settings, monkeypatch):
    # Another server process's revoke: the row goes, this process hears nothing.
    settings.API_TOKEN_CACHE_SECONDS = 1
    key = Token.objects.create(user=alice).key
    assert token_client(key).get("/api/v1/projects/").status_code == 200
    Token.objects.filter(key=key)._raw_delete(using="default")
    assert token_client(key).get("/api/v1/projects/").status_code == 200
    later = time.monotonic() + 1.1  # the cache's clock, moved past its 1 s
    monkeypatch.setattr(authentication, "time", SimpleNamespace(monotonic=lambda: later))
    assert token_client(key).get("/api/v1/projects/").status_code == 401


def test_no_cache_time_looks_the_token_up_every_time(alice, settings):
    settings.API_TOKEN_CACHE_SECONDS = 0
    client = token_client(Token.objects.create(user=alice).key)
    assert _token_queries(client) == 1
    assert _token_queries(client) == 1
