"""Login lockout (django-axes, configured in settings.py): the client address it counts by and
what a locked-out login is answered."""

from __future__ import annotations

from axes.helpers import get_cool_off
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.throttling import BaseThrottle


def client_ip(request: HttpRequest) -> str:
    """The address the API's throttles count by too: REMOTE_ADDR, or the one NUM_PROXIES proxies
    put in X-Forwarded-For."""
    return BaseThrottle().get_ident(request)


def locked_out(request) -> bool:
    """Whether the authentication just tried in this request was refused or caused a lockout."""
    return bool(getattr(request, "axes_locked_out", False))


def retry_after(request) -> int:
    """Seconds until a locked-out login may try again: each attempt starts the cool-off anew."""
    return int(get_cool_off(request).total_seconds())


def message(request) -> str:
    seconds = retry_after(request)
    wait = f"{seconds // 60} minutes" if seconds >= 120 else f"{seconds} seconds"
    return (
        "Too many failed logins for this account or from this address. "
        f"Logging in is blocked for {wait}; try again then."
    )


def lockout_response(request, original_response, credentials) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the login page again, saying why and for how long (429)."""
    context = {
        "form": AuthenticationForm(request),
        "lockout_message": message(request),
        "next": request.POST.get("next", ""),
    }
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(retry_after(request))
    return response
