"""Routing in Django admin: to look, not to change. A policy change re-routes items and spends
the human budget under its lock (routing/services.py), which an admin form would bypass: the
routing page and API make changes."""

import json

from django.contrib import admin

from .models import RouteDecision, RoutingPolicy


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(ReadOnly):
    list_display = ["project", "policy", "judge", "budget_labels", "budget_share", "audit_share"]
    list_filter = ["policy"]


@admin.register(RouteDecision)
class RouteDecisionAdmin(ReadOnly):
    list_display = ["item", "route", "policy", "risk", "audit", "promoted", "decided_at"]
    list_filter = ["route", "policy", "audit", "promoted"]
    raw_id_fields = ["item"]
    list_select_related = ["item"]
    show_full_result_count = False
    readonly_fields = ["what_it_read"]

    @admin.display(description="What the policy read (with the item's stored text features)")
    def what_it_read(self, decision: RouteDecision) -> str:
        return json.dumps(decision.read_features(), indent=1, sort_keys=True)
