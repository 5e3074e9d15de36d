"""Error pages: the API answers in JSON, pages in HTML (Django's own, or templates/<code>.html)."""

from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.views.defaults import bad_request as html_bad_request
from django.views.defaults import page_not_found
from django.views.defaults import server_error as html_server_error

from annotate.importing import human_bytes


def not_found(request, exception=None):
    """A URL nothing matches (e.g. a malformed slug): JSON under /api/, the HTML page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def bad_request(request, exception=None):
    """A request Django refuses before any view (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, too
    many fields, a bad Host): JSON under /api/, the HTML page elsewhere."""
    if request.path.startswith("/api/"):
        too_big = isinstance(exception, RequestDataTooBig)
        reason = "Request body too large." if too_big else "Bad request."
        return JsonResponse({"detail": reason}, status=400)
    return html_bad_request(request, exception)


def server_error(request):
    """An exception no view handled: JSON under /api/, the HTML page elsewhere. Says nothing of
    the cause (the log has it)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error."}, status=500)
    return html_server_error(request)


def payload_too_large(request, limit: int, setting: str, *, length: int | None = None):
    """413 for a body over its limit: declared `length` bytes, or files that passed `limit` as
    they arrived. JSON under /api/, plain text elsewhere."""
    size = f"{human_bytes(length)}, " if length is not None else ""
    if setting == "IMPORT_MAX_BYTES":
        rule = f"files of up to {human_bytes(limit)} can be uploaded ({setting})"
    else:
        rule = f"requests without a login may send up to {human_bytes(limit)} ({setting})"
    message = f"Request body too large: {size}{rule}."
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=413)
    return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")
