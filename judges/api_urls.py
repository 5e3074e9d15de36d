"""API routes of judges and judge runs, under /api/v1/."""

from django.urls import path

# Registers the db_id converter.
import feedback_api.urls  # noqa: F401

from . import api

app_name = "judges-api"

urlpatterns = [
    path("projects/<slug:slug>/judges/", api.JudgeListView.as_view(), name="judge-list"),
    path(
        "projects/<slug:slug>/judges/<db_id:pk>/",
        api.JudgeDetailView.as_view(),
        name="judge-detail",
    ),
    path(
        "projects/<slug:slug>/judges/<db_id:pk>/preview/",
        api.judge_preview,
        name="judge-preview",
    ),
    path(
        "projects/<slug:slug>/judges/<db_id:pk>/calibration/",
        api.judge_calibration,
        name="judge-calibration",
    ),
    path("projects/<slug:slug>/judge-runs/", api.RunListView.as_view(), name="run-list"),
    path("projects/<slug:slug>/judge-runs/<db_id:pk>/", api.run_detail, name="run-detail"),
    path("projects/<slug:slug>/judge-runs/<db_id:pk>/cancel/", api.run_cancel, name="run-cancel"),
    path(
        "projects/<slug:slug>/judge-runs/<db_id:pk>/verdicts/",
        api.RunVerdictsView.as_view(),
        name="run-verdicts",
    ),
    path(
        "projects/<slug:slug>/judge-runs/<db_id:pk>/judgments/",
        api.RunJudgmentsView.as_view(),
        name="run-judgments",
    ),
]
