"""Error pages: the API answers in JSON, pages in HTML (Django's own, or templates/<code>.html)."""

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.defaults import bad_request as html_bad_request
from django.views.defaults import page_not_found
from django.views.defaults import server_error as html_server_error


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
