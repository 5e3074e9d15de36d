"""The routing pages of a project: its policy and budget, and the routing report."""

from django.urls import path

from . import views

app_name = "routing"

urlpatterns = [
    path("projects/<slug:slug>/routing/", views.routing_settings, name="settings"),
    path("projects/<slug:slug>/routing/route/", views.route_now, name="route"),
    path("projects/<slug:slug>/routing/report/", views.routing_report, name="report"),
]
