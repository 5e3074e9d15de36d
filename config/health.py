"""GET /health/: a cheap liveness answer for anyone, the details for staff and monitors.

Anonymous callers (load balancers, the container healthcheck) get `{"status": "ok"}` (200) when
the database answers a `SELECT 1`, `{"status": "down"}` (503) when it does not: no broker, no
worker ping, nothing about the installation. A staff user (logged in, or with their API token)
or a monitor sending `Authorization: Bearer <HEALTH_TOKEN>` gets the details: the database, the
broker and whether a Celery worker answers a ping. The ping waits up to a second, so its result
is kept in the default cache for HEALTH_CACHE_SECONDS.

The detailed status is "ok" when all three are fine; "degraded" (HTTP 200) when only the worker
is missing, because pages still work and queued jobs wait for a worker; "down" (HTTP 503) when the
database or the broker cannot be reached. JSON by default; an HTML table for a browser that asks
for it. Error messages and worker names are shown with DEBUG on, and always logged.
"""

from __future__ import annotations

import hmac
import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.utils.html import format_html, format_html_join
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery import app
from feedback_api.authentication import token_user

logger = logging.getLogger(__name__)

BROKER_TIMEOUT = 2.0  # seconds to connect to the broker
PING_TIMEOUT = 1.0  # seconds to wait for workers to answer a ping
CACHE_KEY = "health:celery"


@never_cache
@require_GET
def health(request):
    if not _may_see_details(request):
        database = _check_database(details=False)
        status, code = ("ok", 200) if database["ok"] else ("down", 503)
        return _answer(request, {"status": status}, code)
    details = settings.DEBUG
    checks = {"database": _check_database(details)}
    checks["broker"], checks["worker"], age = _cached_celery_checks(details)
    if not (checks["database"]["ok"] and checks["broker"]["ok"]):
        status, code = "down", 503
    elif not checks["worker"]["ok"]:
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return _answer(request, {"status": status, **checks, "celery_checked_s_ago": age}, code)


def _answer(request, body: dict, code: int) -> HttpResponse:
    wants_html = request.get_preferred_type(["application/json", "text/html"]) == "text/html"
    if wants_html and request.GET.get("format") != "json":
        return _html(body, code)
    return JsonResponse(body, status=code)


def _may_see_details(request) -> bool:
    """A monitor with the HEALTH_TOKEN (no database needed), or staff by session or API token."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and settings.HEALTH_TOKEN:
        token = header.removeprefix("Bearer ").encode()
        return hmac.compare_digest(token, settings.HEALTH_TOKEN.encode())
    try:
        if request.user.is_authenticated:
            return request.user.is_staff
        user = token_user(request)
    except DatabaseError:
        # Without a database nobody can be told apart: the liveness answer says "down".
        return False
    return user is not None and user.is_staff


def _cached_celery_checks(details: bool) -> tuple[dict, dict, int]:
    """The broker and worker checks, at most HEALTH_CACHE_SECONDS old (and their age)."""
    hit = cache.get(CACHE_KEY)
    if hit is None or hit["details"] != details:
        broker, worker = _check_celery(details)
        hit = {"details": details, "broker": broker, "worker": worker, "at": time.time()}
        cache.set(CACHE_KEY, hit, settings.HEALTH_CACHE_SECONDS)
    return hit["broker"], hit["worker"], round(time.time() - hit["at"])


def _check_database(details: bool) -> dict:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return _failed("database", exc, details)
    return {"ok": True, "vendor": connection.vendor, "ms": _ms_since(started)}


def _check_celery(details: bool) -> tuple[dict, dict]:
    """The broker, then (only if it answered) the workers, over one connection."""
    started = time.monotonic()
    with app.connection_for_read(connect_timeout=BROKER_TIMEOUT) as conn:
        try:
            conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT)
        except Exception as exc:
            return _failed("broker", exc, details), {"ok": False, "error": "broker unreachable"}
        broker = {"ok": True, "transport": conn.transport_cls, "ms": _ms_since(started)}
        started = time.monotonic()
        try:
            replies = app.control.ping(timeout=PING_TIMEOUT, connection=conn)
        except Exception as exc:
            return broker, _failed("worker", exc, details)
    names = sorted(name for reply in replies for name in reply)
    worker = {"ok": bool(names), "answered": len(names), "ms": _ms_since(started)}
    if details:
        worker["names"] = names
    if not names:
        worker["error"] = f"no worker answered a ping within {PING_TIMEOUT:g} s"
    return broker, worker


def _failed(name: str, exc: Exception, details: bool) -> dict:
    logger.warning("health: %s check failed: %s: %s", name, type(exc).__name__, exc)
    return {"ok": False, "error": f"{type(exc).__name__}: {exc}" if details else type(exc).__name__}


def _ms_since(started: float) -> int:
    return round(1000 * (time.monotonic() - started))


def _html(body: dict, code: int) -> HttpResponse:
    rows = format_html_join(
        "\n",
        "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
        (
            (name, "ok" if check["ok"] else "not ok", check.get("error", ""))
            for name, check in body.items()
            if isinstance(check, dict)
        ),
    )
    page = format_html(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Prefhub: {}</title>"
        "</head><body><h1>Prefhub is {}</h1><table>{}</table>"
        "<p><a href='?format=json'>JSON</a></p></body></html>",
        body["status"],
        body["status"],
        rows,
    )
    return HttpResponse(page, status=code)
