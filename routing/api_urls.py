"""API routes of routing, under /api/v1/."""

from django.urls import path

from . import api

app_name = "routing-api"

urlpatterns = [
    path("projects/<slug:slug>/routing/", api.RoutingView.as_view(), name="routing"),
    path("projects/<slug:slug>/routing/route/", api.route, name="route"),
    path("projects/<slug:slug>/routing/router/", api.RouterView.as_view(), name="router"),
    path(
        "projects/<slug:slug>/routing/decisions/",
        api.DecisionListView.as_view(),
        name="decisions",
    ),
    path("projects/<slug:slug>/routing/report/", api.report, name="report"),
    # Any external id, slashes included: only the /route/ at the end is ours.
    path("projects/<slug:slug>/items/<path:external_id>/route/", api.item_route, name="item"),
]
