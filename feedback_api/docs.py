"""The OpenAPI schema and Swagger UI: for logged-in users, or for anyone with API_DOCS_PUBLIC."""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import BasePermission


class DocsPermission(BasePermission):
    """Anyone when API_DOCS_PUBLIC is on, else a logged-in user (session or API token)."""

    def has_permission(self, request, view) -> bool:
        return settings.API_DOCS_PUBLIC or bool(request.user and request.user.is_authenticated)


schema = SpectacularAPIView.as_view(permission_classes=[DocsPermission])
# The split view serves Swagger UI's set-up script from a URL: no inline script (the CSP).
_swagger = SpectacularSwaggerSplitView.as_view(
    url_name="api:schema", permission_classes=[DocsPermission]
)


def swagger(request, *args, **kwargs):
    """Swagger UI; a browser that must log in first goes to the login page and comes back."""
    if not settings.API_DOCS_PUBLIC and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    return _swagger(request, *args, **kwargs)


def throttled_responses(result, generator, request, public):
    """drf-spectacular post-processing: every operation can answer 429 (the API's throttles,
    feedback_api.throttling, apply to every view), so each one documents it with Retry-After."""
    from .views import ERROR_TEXT

    response = {
        "description": ERROR_TEXT[429],
        "headers": {
            "Retry-After": {
                "schema": {"type": "integer"},
                "description": "Seconds to wait before trying again.",
            }
        },
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for path in result.get("paths", {}).values():
        for method, operation in path.items():
            if method in ("get", "post", "put", "patch", "delete"):
                operation.setdefault("responses", {})["429"] = response
    return result
