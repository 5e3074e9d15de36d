import contextlib
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
import redis
from django.conf import settings as django_settings
from django.db import OperationalError, connections
from kombu import pools as kombu_pools

from config import health
from config.celery import app, ping
from config.settings import broker_transport_options


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


def test_health_is_degraded_without_a_worker(client, db, no_worker):
    response = client.get("/health/")
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


def test_health_is_down_when_the_broker_is_unreachable(client, db, tmp_path):
    # Port 1 is closed: the connection is refused at once.
    with isolated_broker(tmp_path, url="redis://127.0.0.1:1/0"):
        response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["database"]["ok"] is True
    assert body["broker"] == {"ok": False, "error": "OperationalError"}
    assert body["worker"]["ok"] is False


def test_health_is_down_when_the_database_is_unreachable(client, db, no_worker):
    refused = OperationalError("connection refused")
    with mock.patch.object(connections["default"], "cursor", side_effect=refused):
        response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["database"] == {"ok": False, "error": "OperationalError"}
    assert body["broker"]["ok"] is True


def test_health_shows_error_messages_only_in_debug(client, db, tmp_path, settings):
    settings.DEBUG = True
    with isolated_broker(tmp_path, url="redis://127.0.0.1:1/0"):
        body = client.get("/health/").json()
    assert body["broker"]["error"].startswith("OperationalError: ")
    assert "127.0.0.1:1" in body["broker"]["error"]


def test_health_is_a_page_for_browsers_and_json_for_others(client, db, no_worker):
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = client.get("/health/", HTTP_ACCEPT=browser)
    assert page["Content-Type"].startswith("text/html")
    assert b"<h1>Prefhub is degraded</h1>" in page.content
    assert b"no worker answered" in page.content
    assert client.get("/health/", HTTP_ACCEPT="*/*")["Content-Type"] == "application/json"
    assert client.get("/health/?format=json", HTTP_ACCEPT=browser).json()["status"] == "degraded"


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
