"""The training pages: runs and the reward-model registry of a project."""

from django.urls import path

# Registers the db_id converter (ids the database can hold; bigger ones 404 instead of a 500).
import feedback_api.urls  # noqa: F401

from . import views

app_name = "rewards"

urlpatterns = [
    path("projects/<slug:slug>/training/", views.run_list, name="runs"),
    path("projects/<slug:slug>/training/new/", views.run_create, name="run-new"),
    path("projects/<slug:slug>/training/<db_id:pk>/", views.run_detail, name="run-detail"),
    path("projects/<slug:slug>/training/<db_id:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("projects/<slug:slug>/reward-models/", views.model_list, name="models"),
    path(
        "projects/<slug:slug>/reward-models/<db_id:version>/download/",
        views.model_download,
        name="model-download",
    ),
]
