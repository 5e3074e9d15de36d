import re

from django.urls import path, register_converter

from . import docs, token_views, views
from .pagination import MAX_DB_INT

USERNAME_RE = re.compile(r"[\w.@+-]{1,150}")


# Path converters that match any segment, so that a malformed id or username reaches the view
# and gets the API's JSON 404 rather than Django's HTML one.


class UsernameConverter:
    """Django's default usernames: letters, digits and @ . + - _; anything else is None."""

    regex = r"[^/]+"

    def to_python(self, value: str) -> str | None:
        return value if USERNAME_RE.fullmatch(value) else None

    def to_url(self, value: str) -> str:
        return value


class DbIdConverter:
    """A row id: a whole number the database can hold; anything else is None."""

    regex = r"[^/]+"

    def to_python(self, value: str) -> int | None:
        if value.isascii() and value.isdigit() and int(value) <= MAX_DB_INT:
            return int(value)
        return None

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(UsernameConverter, "username")
register_converter(DbIdConverter, "db_id")

app_name = "api"

urlpatterns = [
    path("schema/", docs.schema, name="schema"),
    path("docs/", docs.swagger, name="docs"),
    path("auth/token/", token_views.TokenView.as_view(), name="token"),
    path("auth/token/rotate/", token_views.TokenRotateView.as_view(), name="token-rotate"),
    path("tokens/", token_views.token_settings, name="tokens"),
    path("tokens/create/", token_views.token_create, name="tokens-create"),
    path("tokens/revoke/", token_views.token_revoke, name="tokens-revoke"),
    path("projects/", views.ProjectListView.as_view(), name="project-list"),
    path("projects/<slug:slug>/", views.ProjectDetailView.as_view(), name="project-detail"),
    path("projects/<slug:slug>/stats/", views.project_stats, name="project-stats"),
    path("projects/<slug:slug>/members/", views.MemberListView.as_view(), name="member-list"),
    path(
        "projects/<slug:slug>/members/<username:username>/",
        views.MemberDetailView.as_view(),
        name="member-detail",
    ),
    path("projects/<slug:slug>/items/", views.ItemListView.as_view(), name="item-list"),
    path("projects/<slug:slug>/items/import/", views.item_import, name="item-import"),
    path("projects/<slug:slug>/items/<db_id:pk>/", views.item_detail, name="item-detail"),
    path("projects/<slug:slug>/imports/<db_id:pk>/", views.import_job_detail, name="import-job"),
    path(
        "projects/<slug:slug>/annotations/",
        views.AnnotationListView.as_view(),
        name="annotation-list",
    ),
    path(
        "projects/<slug:slug>/assignments/next/",
        views.assignment_next,
        name="assignment-next",
    ),
    path(
        "projects/<slug:slug>/assignments/progress/",
        views.assignment_progress,
        name="assignment-progress",
    ),
    path("assignments/<db_id:pk>/submit/", views.assignment_submit, name="assignment-submit"),
    path("assignments/<db_id:pk>/skip/", views.assignment_skip, name="assignment-skip"),
    path("assignments/<db_id:pk>/release/", views.assignment_release, name="assignment-release"),
]
