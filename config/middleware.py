"""Middleware of our own."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpResponse
from django.shortcuts import resolve_url

from config import errors
from feedback_api.authentication import token_user


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


class RequestSizeLimitMiddleware:
    """Refuse a request body over its limit (413) before anything reads it.

    Django reads a body only as far as its Content-Length, so a request that declares more than
    its limit is answered here unread. This must run before CsrfViewMiddleware's process_view,
    which reads a POST's form: 176 MB of a 200 MB anonymous POST to /login/ were written to /tmp
    before its 403. The files of a multipart body within that length are counted as they arrive
    by UploadLimitHandler, which refuses the request once they pass the limit."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        length = _content_length(request)
        # Most requests are small: who is asking is looked up only for a large one.
        if length > settings.ANONYMOUS_REQUEST_MAX_BYTES:
            files, body, setting = request_limits(request)
            if length > body:
                return errors.payload_too_large(request, files, setting, length=length)
        response = self.get_response(request)
        refused = getattr(request, "upload_refused", None)
        if refused:
            return errors.payload_too_large(request, *refused)
        return response


class UploadTooLarge(RequestDataTooBig):
    """The files of a request passed its upload limit while they arrived."""


class UploadLimitHandler(FileUploadHandler):
    """The first of FILE_UPLOAD_HANDLERS: counts a request's file bytes as they arrive and refuses
    the request once they pass its limit, before the handlers after it keep them (in memory or in
    a temporary file), and deletes what those kept of the file it stopped."""

    def __init__(self, request=None):
        super().__init__(request)
        self.received = 0
        self.limit: int | None = None
        self.setting = ""

    def receive_data_chunk(self, raw_data, start):
        if self.limit is None:
            self.limit, _body, self.setting = request_limits(self.request)
        self.received += len(raw_data)
        if self.received > self.limit:
            for handler in self.request.upload_handlers:
                handler.upload_interrupted()
            # RequestDataTooBig becomes a 400; RequestSizeLimitMiddleware turns it into the 413.
            self.request.upload_refused = (self.limit, self.setting)
            raise UploadTooLarge(f"uploaded files over {self.limit} bytes ({self.setting})")
        return raw_data

    def file_complete(self, file_size):
        return None


def request_limits(request) -> tuple[int, int, str]:
    """The most bytes of files a request may carry, of its whole body, and the setting that says
    so: with a login (session or API token) an import file and the form's other fields, without
    one a small body."""
    if _logged_in(request):
        files = settings.IMPORT_MAX_BYTES
        return files, files + settings.DATA_UPLOAD_MAX_MEMORY_SIZE, "IMPORT_MAX_BYTES"
    small = settings.ANONYMOUS_REQUEST_MAX_BYTES
    return small, small, "ANONYMOUS_REQUEST_MAX_BYTES"


def _logged_in(request) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return True
    # API clients log in per request, in DRF's view; their token is checked here as well.
    return token_user(request) is not None


def _content_length(request) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0
