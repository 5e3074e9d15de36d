"""The routing pages of a project: its policy and budget, the routing report, and the closed
loop's page with its actions."""

from django.urls import path

from . import loop_views, views

app_name = "routing"

urlpatterns = [
    path("projects/<slug:slug>/routing/", views.routing_settings, name="settings"),
    path("projects/<slug:slug>/routing/route/", views.route_now, name="route"),
    path("projects/<slug:slug>/routing/router/train/", views.train_router, name="train-router"),
    path("projects/<slug:slug>/routing/report/", views.routing_report, name="report"),
    path("projects/<slug:slug>/loop/", loop_views.loop_page, name="loop"),
    path("projects/<slug:slug>/loop/<slug:action>/", loop_views.loop_action, name="loop-action"),
]
