"""Middleware of our own."""

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import resolve_url


class HtmxLoginRedirectMiddleware:
    """An htmx request whose session has ended would swap the whole login page into a fragment:
    tell htmx to load the login page as a page instead (HX-Redirect)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.login_url = None

    def __call__(self, request):
        response = self.get_response(request)
        if not getattr(request, "htmx", False) or response.status_code != 302:
            return response
        if self.login_url is None:
            self.login_url = resolve_url(settings.LOGIN_URL)
        location = response.get("Location", "")
        if not location.split("?")[0].endswith(self.login_url):
            return response
        redirect = HttpResponse(status=204)
        redirect["HX-Redirect"] = location
        return redirect
