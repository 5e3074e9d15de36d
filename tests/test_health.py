import contextlib
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import OperationalError, connection, connections
from kombu import pools as kombu_pools
from rest_framework.authtoken.models import Token

from config import health
from config.celery import app, ping
from config.settings import broker_transport_options

from .factories import UserFactory


@contextmanager
def isolated_broker(folder: Path, url: str | None = None):
    """Point this process's Celery app at a broker that no other run uses: a fresh folder for the
    filesystem transport, a fresh key prefix in Redis. A worker started by a test must get the
    same CELERY_BROKER_URL, CELERY_BROKER_DIR and CELERY_BROKER_KEY_PREFIX (yielded here)."""
    url = url or django_settings.CELERY_BROKER_URL
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    saved = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_transport_options = broker_transport_options(
        url, folder=folder, key_prefix=prefix
    )
    _drop_connections()
    # A cached check of the previous broker must not answer for this one.
    cache.delete(health.CACHE_KEY)
    # Celery reads the broker URL from the environment first, then from its settings.
    with mock.patch.dict(os.environ, {"CELERY_BROKER_URL": url}):
        app.conf.broker_url = url
        try:
            yield {
                "CELERY_BROKER_URL": url,
                "CELERY_BROKER_DIR": str(folder),
                "CELERY_BROKER_KEY_PREFIX": prefix,
            }
        finally:
            app.conf.broker_url, app.conf.broker_transport_options = saved
            _drop_connections()
            cache.delete(health.CACHE_KEY)
            if url.startswith("redis://"):
                _delete_redis_keys(url, prefix)


def _drop_connections() -> None:
    # The app pools its connections (in kombu's global pools, keyed by URL); those made with the
    # old options must not be reused, and a closed pool must not stay registered for its URL.
    kombu_pools.reset()
    app._after_fork()


def _delete_redis_keys(url: str, prefix: str) -> None:
    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def no_worker(tmp_path, monkeypatch):
    monkeypatch.setattr(health, "PING_TIMEOUT", 0.2)
    with isolated_broker(tmp_path / "broker"):
        yield


@pytest.fixture
def staff(db):
    return UserFactory(username="sam", is_staff=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def pings(monkeypatch):
    """Counts the worker pings /health/ sends (each answered by no worker, at once)."""
    sent = []

    def ping(**kwargs):
        sent.append(kwargs)
        return []

    monkeypatch.setattr(app.control, "ping", ping)
    return sent


def test_anonymous_health_says_only_ok_and_pings_no_worker(client, db, no_worker, pings):
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert pings == []


def test_anonymous_health_is_down_when_the_database_is_unreachable(client, staff, db, pings):
    refused = OperationalError("connection refused")
    with mock.patch.object(connections["default"], "cursor", side_effect=refused):
        response = client.get("/health/")
    assert response.status_code == 503
    assert response.json() == {"status": "down"}
    # Staff cannot be told apart without the database: the same answer, not an error.
    client.force_login(staff)
    with mock.patch.object(connections["default"], "cursor", side_effect=refused):
        response = client.get("/health/")
    assert (response.status_code, response.json()) == (503, {"status": "down"})


def test_anonymous_health_page_tells_nothing_either(client, db, pings):
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = client.get("/health/", HTTP_ACCEPT=browser).content.decode()
    assert "<h1>Prefhub is ok</h1>" in page
    assert "<tr>" not in page
    assert pings == []


def test_a_user_who_is_not_staff_gets_the_anonymous_answer(client, alice, no_worker, pings):
    client.force_login(alice)
    assert client.get("/health/").json() == {"status": "ok"}
    key = Token.objects.create(user=alice).key
    assert client.get("/health/", HTTP_AUTHORIZATION=f"Token {key}").json() == {"status": "ok"}
    assert pings == []


def test_a_wrong_token_gets_the_anonymous_answer(client, db, settings, pings):
    settings.HEALTH_TOKEN = "monitor-secret"
    for header in ("Bearer wrong", "Bearer ", "Token nonsense", "Basic bW9uaXRvcg=="):
        response = client.get("/health/", HTTP_AUTHORIZATION=header)
        assert response.json() == {"status": "ok"}, header
    assert pings == []


def test_staff_get_the_details(staff_client, no_worker):
    response = staff_client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"]["vendor"] == connection.vendor
    assert body["broker"]["transport"]
    assert body["worker"]["answered"] == 0


def test_a_staff_api_token_or_the_health_token_gets_the_details(client, staff, settings, no_worker):
    key = Token.objects.create(user=staff).key
    body = client.get("/health/", HTTP_AUTHORIZATION=f"Token {key}").json()
    assert body["status"] == "degraded"
    settings.HEALTH_TOKEN = "monitor-secret"
    body = client.get("/health/", HTTP_AUTHORIZATION="Bearer monitor-secret").json()
    assert body["status"] == "degraded"
    assert body["worker"]["answered"] == 0


def test_the_worker_ping_is_cached(staff_client, no_worker, pings, settings):
    settings.HEALTH_CACHE_SECONDS = 30
    first = staff_client.get("/health/").json()
    second = staff_client.get("/health/").json()
    assert len(pings) == 1
    assert first["worker"] == second["worker"]
    assert second["celery_checked_s_ago"] >= 0
    cache.delete(health.CACHE_KEY)
    staff_client.get("/health/")
    assert len(pings) == 2


def test_health_is_degraded_without_a_worker(staff_client, no_worker):
    response = staff_client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is True
    assert body["worker"] == {
        "ok": False,
        "answered": 0,
        "ms": body["worker"]["ms"],
        "error": "no worker answered a ping within 0.2 s",
    }


def test_health_is_down_when_the_broker_is_unreachable(staff_client, tmp_path):
    # Port 1 is closed: the connection is refused at once.
    with isolated_broker(tmp_path, url="redis://127.0.0.1:1/0"):
        response = staff_client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["database"]["ok"] is True
    assert body["broker"] == {"ok": False, "error": "OperationalError"}
    assert body["worker"]["ok"] is False


def test_health_is_down_when_the_database_is_unreachable(client, db, settings, no_worker):
    settings.HEALTH_TOKEN = "monitor-secret"
    refused = OperationalError("connection refused")
    with mock.patch.object(connections["default"], "cursor", side_effect=refused):
        response = client.get("/health/", HTTP_AUTHORIZATION="Bearer monitor-secret")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["database"] == {"ok": False, "error": "OperationalError"}
    assert body["broker"]["ok"] is True


def test_health_shows_error_messages_only_in_debug(staff_client, tmp_path, settings):
    settings.DEBUG = True
    with isolated_broker(tmp_path, url="redis://127.0.0.1:1/0"):
        body = staff_client.get("/health/").json()
    assert body["broker"]["error"].startswith("OperationalError: ")
    assert "127.0.0.1:1" in body["broker"]["error"]


def test_health_is_a_page_for_browsers_and_json_for_others(staff_client, no_worker):
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = staff_client.get("/health/", HTTP_ACCEPT=browser)
    assert page["Content-Type"].startswith("text/html")
    assert b"<h1>Prefhub is degraded</h1>" in page.content
    assert b"no worker answered" in page.content
    assert staff_client.get("/health/", HTTP_ACCEPT="*/*")["Content-Type"] == "application/json"
    json_body = staff_client.get("/health/?format=json", HTTP_ACCEPT=browser).json()
    assert json_body["status"] == "degraded"


def test_health_is_not_cached_and_takes_only_get(client, db, no_worker):
    response = client.get("/health/")
    assert "no-cache" in response["Cache-Control"]
    assert client.post("/health/").status_code == 405


def test_tasks_still_enqueue_after_a_health_check_on_another_broker(tmp_path, eager_celery):
    # The health tests swap brokers; the default broker's pool must come back usable.
    assert ping.delay().get(timeout=5) == "pong"
    with isolated_broker(tmp_path / "broker"):
        pass
    assert ping.delay().get(timeout=5) == "pong"
