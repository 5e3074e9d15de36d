"""Brute force and request floods: failed logins lock a username and an address out for a
cool-off (login page and API token endpoint alike), and the API answers 429 with Retry-After past
its per-user and per-address rates."""

import time
from datetime import timedelta

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from .factories import ItemFactory

PASSWORD = "correct horse battery"  # tests/factories.py
TOKEN_URL = "/api/v1/auth/token/"
LIMIT = 3
LABEL = {"choice": "A", "strength": 2, "rationale": "Shorter and right."}


@pytest.fixture
def lockout(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


def log_in(username: str, password: str, ip: str = "127.0.0.1", **headers) -> tuple:
    """POST the login page from `ip`: the response and whether the client is now logged in."""
    client = Client(REMOTE_ADDR=ip, **headers)
    response = client.post("/login/", {"username": username, "password": password})
    return response, "_auth_user_id" in client.session


def get_token(username: str, password: str, ip: str = "127.0.0.1"):
    return APIClient(REMOTE_ADDR=ip).post(
        TOKEN_URL, {"username": username, "password": password}, format="json"
    )


def assert_locked_out_page(response) -> None:
    assert response.status_code == 429
    assert response["Retry-After"] == "900"
    text = response.content.decode()
    assert "Too many failed logins" in text and "blocked for 15 minutes" in text
    assert 'name="password"' in text  # the login form, to try again later


# The login page ------------------------------------------------------------------------------


def test_wrong_passwords_lock_the_account_and_then_the_right_one_is_refused(alice, lockout):
    for _ in range(LIMIT - 1):
        response, logged_in = log_in("alice", "wrong")
        assert response.status_code == 200 and not logged_in
        assert "didn't match" in response.content.decode()
    response, _ = log_in("alice", "wrong")
    assert_locked_out_page(response)

    response, logged_in = log_in("alice", PASSWORD)
    assert_locked_out_page(response)
    assert not logged_in


def test_the_admin_login_counts_and_locks_too(alice, lockout):
    alice.is_staff = True
    alice.save()
    client = Client()
    for _ in range(LIMIT - 1):
        client.post("/admin/login/", {"username": "alice", "password": "wrong"})
    response, logged_in = log_in("alice", "wrong")
    assert_locked_out_page(response)
    response = client.post("/admin/login/", {"username": "alice", "password": PASSWORD})
    assert_locked_out_page(response)
    assert "_auth_user_id" not in client.session


def test_a_lockout_follows_the_account_to_other_addresses(alice, bob, lockout):
    for i in range(LIMIT):
        log_in("alice", "wrong", ip=f"10.0.0.{i + 1}")
    response, logged_in = log_in("alice", PASSWORD, ip="10.0.1.1")
    assert response.status_code == 429 and not logged_in
    # Another account, from another address, is not affected.
    response, logged_in = log_in("bob", PASSWORD, ip="10.0.1.2")
    assert response.status_code == 302 and logged_in


def test_failures_on_several_accounts_lock_the_address(alice, bob, charlie, lockout):
    for username in ("alice", "charlie", "nobody"):
        log_in(username, "wrong", ip="10.0.0.1")
    response, logged_in = log_in("bob", PASSWORD, ip="10.0.0.1")
    assert response.status_code == 429 and not logged_in
    # Bob's account is not locked: from another address his password works.
    response, logged_in = log_in("bob", PASSWORD, ip="10.0.0.2")
    assert response.status_code == 302 and logged_in


def test_a_forwarded_for_header_does_not_make_a_new_address(alice, bob, lockout):
    # No proxy is configured (NUM_PROXIES=0): the header is the client's to write, so ignored.
    for i in range(LIMIT):
        log_in(f"user-{i}", "wrong", ip="10.0.0.1", HTTP_X_FORWARDED_FOR=f"192.0.2.{i}")
    response, logged_in = log_in("bob", PASSWORD, ip="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.9")
    assert response.status_code == 429 and not logged_in


def test_behind_a_proxy_the_forwarded_address_is_counted(alice, bob, settings, lockout):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    for i in range(LIMIT):
        log_in(f"user-{i}", "wrong", ip="10.9.9.9", HTTP_X_FORWARDED_FOR="192.0.2.1")
    response, _ = log_in("bob", PASSWORD, ip="10.9.9.9", HTTP_X_FORWARDED_FOR="192.0.2.1")
    assert response.status_code == 429
    # The proxy's own address is shared by everyone behind it: another client still logs in.
    response, logged_in = log_in("bob", PASSWORD, ip="10.9.9.9", HTTP_X_FORWARDED_FOR="192.0.2.2")
    assert response.status_code == 302 and logged_in


def test_a_lockout_ends_after_the_cool_off(alice, settings, lockout):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    for _ in range(LIMIT):
        log_in("alice", "wrong")
    response, logged_in = log_in("alice", PASSWORD)
    assert response.status_code == 429 and not logged_in
    assert "blocked for 1 seconds" in response.content.decode()
    time.sleep(1.2)
    response, logged_in = log_in("alice", PASSWORD)
    assert response.status_code == 302 and logged_in


def test_mistyping_a_few_times_still_lets_the_right_password_in(alice):
    # The configured limit (LOGIN_FAILURE_LIMIT, default 10): a few typos are fine, more lock.
    for _ in range(3):
        assert log_in("alice", "wrong")[0].status_code == 200
    response, logged_in = log_in("alice", PASSWORD)
    assert response.status_code == 302 and logged_in
    for _ in range(7):
        log_in("alice", "wrong")
    assert log_in("alice", PASSWORD)[0].status_code == 429


# The API token endpoint ----------------------------------------------------------------------


def test_wrong_passwords_on_the_token_endpoint_answer_429_with_retry_after(alice, lockout):
    for _ in range(LIMIT - 1):
        assert get_token("alice", "wrong").status_code == 400
    response = get_token("alice", "wrong")
    assert response.status_code == 429
    assert response["Retry-After"] == "900"
    assert "Too many failed logins" in response.json()["detail"]

    response = get_token("alice", PASSWORD)
    assert response.status_code == 429 and response["Retry-After"] == "900"
    assert not Token.objects.exists()


def test_the_token_endpoint_and_the_login_page_share_the_count(alice, lockout):
    get_token("alice", "wrong")
    get_token("alice", "wrong")
    response, logged_in = log_in("alice", "wrong")
    assert response.status_code == 429 and not logged_in
    assert get_token("alice", PASSWORD).status_code == 429


def test_the_token_endpoint_unlocks_after_the_cool_off(alice, settings, lockout):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    for _ in range(LIMIT):
        get_token("alice", "wrong")
    assert get_token("alice", PASSWORD)["Retry-After"] == "1"
    time.sleep(1.2)
    assert get_token("alice", PASSWORD).status_code == 201


# API rates -----------------------------------------------------------------------------------


def token_client(user, ip: str = "127.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_a_token_past_its_rate_gets_429_with_retry_after(alice, bob, project, settings):
    settings.API_THROTTLE_USER_PER_MINUTE = 3
    client = token_client(alice)
    for _ in range(3):
        assert client.get("/api/v1/projects/").status_code == 200
    response = client.get("/api/v1/projects/")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert "throttled" in response.json()["detail"]
    # Counted per user, not per address: bob, from the same address, is served.
    assert token_client(bob).get("/api/v1/projects/").status_code == 200


def test_a_session_user_past_the_rate_gets_429(alice, project, settings):
    settings.API_THROTTLE_USER_PER_MINUTE = 2
    client = APIClient()
    client.force_login(alice)
    assert [client.get("/api/v1/projects/").status_code for _ in range(3)] == [200, 200, 429]


def test_anonymous_requests_are_counted_per_address(alice, settings):
    settings.API_THROTTLE_ANON_PER_MINUTE = 2
    codes = [get_token("alice", PASSWORD, ip="10.0.0.1").status_code for _ in range(3)]
    assert codes == [201, 200, 429]
    assert get_token("alice", PASSWORD, ip="10.0.0.2").status_code == 200


def test_each_rate_applies_to_its_own_kind_of_request(alice, project, settings):
    # A low anonymous rate does not limit users; no anonymous limit leaves none by the user rate.
    settings.API_THROTTLE_ANON_PER_MINUTE = 1
    settings.API_THROTTLE_USER_PER_MINUTE = 2
    client = token_client(alice)
    assert [client.get("/api/v1/projects/").status_code for _ in range(3)] == [200, 200, 429]
    settings.API_THROTTLE_ANON_PER_MINUTE = 0
    codes = {get_token("alice", PASSWORD, ip="10.0.0.3").status_code for _ in range(4)}
    assert codes == {200}


def test_an_annotator_labelling_through_the_api_is_not_throttled(project, annotator):
    # Default rates (API_THROTTLE_USER_PER_MINUTE=600): 150 items labelled in a burst, 300
    # requests, all served; the same token's 601st request in the minute is refused.
    project.gold_rate = 0
    project.save()
    for i in range(150):
        ItemFactory(project=project, external_id=f"q{i}")
    client = token_client(annotator)
    for _ in range(150):
        lease = client.post("/api/v1/projects/alices-pairs/assignments/next/")
        assert lease.status_code == 200, lease.content
        submitted = client.post(
            f"/api/v1/assignments/{lease.json()['id']}/submit/", {"label": LABEL}, format="json"
        )
        assert submitted.status_code == 201, submitted.content
    codes = [client.get("/api/v1/projects/").status_code for _ in range(301)]
    assert codes.count(429) == 1 and codes[-1] == 429


def test_the_schema_documents_429_with_retry_after_on_every_operation(alice):
    """Every API view is throttled, so every operation says it can answer 429."""
    client = APIClient()
    client.force_authenticate(alice)
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) > 40
    for path, method, operation in operations:
        answer = operation["responses"].get("429")
        assert answer, f"{method.upper()} {path} does not document 429"
        assert "Retry-After" in answer["headers"]
        assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
