"""The judge pages of a project: judges, their runs."""

from django.urls import path

# Registers the db_id converter (ids the database can hold; bigger ones 404 instead of a 500).
import feedback_api.urls  # noqa: F401

from . import views

app_name = "judges"

urlpatterns = [
    path("projects/<slug:slug>/judges/", views.judge_list, name="list"),
    path("projects/<slug:slug>/judges/new/", views.judge_create, name="new"),
    path("projects/<slug:slug>/judges/<db_id:pk>/", views.judge_edit, name="edit"),
    path(
        "projects/<slug:slug>/judges/<db_id:pk>/calibration/",
        views.judge_calibration,
        name="calibration",
    ),
    path("projects/<slug:slug>/judge-runs/", views.run_list, name="runs"),
    path("projects/<slug:slug>/judge-runs/new/", views.run_create, name="run-new"),
    path("projects/<slug:slug>/judge-runs/<db_id:pk>/", views.run_detail, name="run-detail"),
    path("projects/<slug:slug>/judge-runs/<db_id:pk>/cancel/", views.run_cancel, name="run-cancel"),
]
