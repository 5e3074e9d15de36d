"""The closed loop's page of a project (routing:loop) and its actions (routing:loop-action)."""

from django.urls import path

from . import loop_views

app_name = "routing"

urlpatterns = [
    path("projects/<slug:slug>/loop/", loop_views.loop_page, name="loop"),
    path("projects/<slug:slug>/loop/<slug:action>/", loop_views.loop_action, name="loop-action"),
]
