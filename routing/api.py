"""The routing REST API, under /api/v1/ (routing/api_urls.py): a project's routing policy and
budget, routing on demand, the decisions, an item's decision and the routing report.

Built on feedback_api's shared pieces: its authentication and permissions (REST_FRAMEWORK
settings), errors and id-cursor pagination, and annotate.access.project_for_user. Researchers
read; admins change the policy and budget and route.

An item's decision is served here (items/<external_id>/route/), not on feedback_api's item
endpoints: the arrows run feedback_api <- ... <- routing, so feedback_api may not know the
routing app or its RouteDecision; it shows the item's `route` column, which annotate owns.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.access import project_for_user
from annotate.models import Judge, Project, Role
from feedback_api.pagination import IdCursorPagination
from feedback_api.parsers import JSONParser
from feedback_api.views import errors

from . import selectors, services
from .models import RoutingPolicy
from .serializers import (
    DecisionFilterSerializer,
    DecisionSerializer,
    ItemDecisionSerializer,
    ReportSerializer,
    RouterSerializer,
    RouteStartedSerializer,
    RoutingSerializer,
    RoutingWriteSerializer,
)

EXTERNAL_ID = OpenApiParameter(
    "external_id", str, OpenApiParameter.PATH, description="The item's external id."
)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _body(project: Project, row: RoutingPolicy) -> dict:
    context = {"budget": services.budget(project, row)}
    return RoutingSerializer(row, context=context).data


def _settings(project: Project, row: RoutingPolicy, data: dict) -> dict:
    """The settings policy_save takes: the current ones with the request's on top."""
    current = {
        "policy": row.policy,
        "params": row.params,
        "judge": row.judge,
        "budget_labels": row.budget_labels,
        "budget_share": row.budget_share,
        "audit_share": row.audit_share,
        "seed": row.seed,
    }
    if data.get("policy", row.policy) != row.policy:
        current["params"] = None  # another policy's parameters: its defaults unless given
    if data.get("judge") is not None:
        judge = Judge.objects.filter(project=project, pk=data["judge"]).first()
        if judge is None:
            raise ValidationError({"judge": [f"no judge {data['judge']} in this project"]})
        data = {**data, "judge": judge}
    return {**current, **data}


class RoutingView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="routing_retrieve",
        responses={200: RoutingSerializer, **errors(401, 403, 404)},
        description="The project's routing policy, its parameters, the router judge, the human "
        "budget and the audit share, with what is spent and left (researchers and admins).",
    )
    def get(self, request, slug):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        return Response(_body(project, selectors.policy_of(project)))

    @extend_schema(
        operation_id="routing_update",
        request=RoutingWriteSerializer,
        responses={200: RoutingSerializer, **errors(400, 401, 403, 404, 415)},
        description="Change the routing settings (project admins); omitted settings keep their "
        "values. Every item no person has started is routed again under the new settings.",
    )
    def put(self, request, slug):
        project = project_for_user(request.user, slug, Role.ADMIN)
        data = _valid(RoutingWriteSerializer, request.data)
        row = services.policy_for(project)
        try:
            row = services.policy_save(
                project=project, data=_settings(project, row, data), user=request.user
            )
        except services.ServiceError as exc:
            raise ValidationError({exc.field: [exc.message]}) from None
        return Response(_body(project, row))


@extend_schema(
    operation_id="routing_route",
    request=None,
    responses={202: RouteStartedSerializer, **errors(401, 403, 404)},
    description="Route the project's waiting items and promote unsure verdicts (project "
    "admins): queued for a worker, never done in the request.",
)
@api_view(["POST"])
def route(request, slug):
    project = project_for_user(request.user, slug, Role.ADMIN)
    task_id = services.route_enqueue(
        project=project, trigger=f"on demand by {request.user.get_username()} (API)"
    )
    body = RouteStartedSerializer({"task_id": task_id, "status": "queued"}).data
    return Response(body, status=status.HTTP_202_ACCEPTED)


class RouterView(APIView):
    @extend_schema(
        operation_id="routing_router",
        responses={200: RouterSerializer, **errors(401, 403, 404)},
        description="The project's current learned router (researchers and admins): when and on "
        "what it was trained, its held-out AUC and routing curve, its features; null fields "
        "when none is trained.",
    )
    def get(self, request, slug):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        return Response(RouterSerializer(services.router_current(project) or {}).data)

    @extend_schema(
        operation_id="routing_router_train",
        request=None,
        responses={202: RouteStartedSerializer, **errors(400, 401, 403, 404)},
        description="Train the learned router again (project admins): queued for the training "
        "worker, never done in the request.",
    )
    def post(self, request, slug):
        project = project_for_user(request.user, slug, Role.ADMIN)
        try:
            task_id = services.router_train_enqueue(project=project)
        except services.ServiceError as exc:
            raise ValidationError({exc.field: [exc.message]}) from None
        body = RouteStartedSerializer({"task_id": task_id, "status": "queued"}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


class DecisionListView(APIView):
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="routing_decisions",
        parameters=[DecisionFilterSerializer],
        responses={200: DecisionSerializer(many=True), **errors(400, 401, 403, 404)},
        description="The project's routing decisions (the latest per item), a page at a time "
        "(researchers and admins); ?route= keeps one route.",
    )
    def get(self, request, slug):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        route = _valid(DecisionFilterSerializer, request.query_params).get("route")
        rows = selectors.decisions_for(project, route)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(DecisionSerializer(page, many=True).data)


@extend_schema(
    operation_id="routing_item",
    parameters=[EXTERNAL_ID],
    responses={200: ItemDecisionSerializer, **errors(401, 403, 404)},
    description="An item's route and the decision that set it: the policy, its risk score, "
    "reason and the features it read (null when never routed).",
)
@api_view(["GET"])
def item_route(request, slug, external_id):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    item = None
    # A NUL no database stores, or an id longer than any: no such item.
    if "\x00" not in external_id and len(external_id) <= 255:
        item = selectors.item_with_decision(project, external_id)
    if item is None:
        raise Http404("No such item.")
    return Response(ItemDecisionSerializer(item).data)


@extend_schema(
    operation_id="routing_report",
    responses={200: ReportSerializer, **errors(401, 403, 404)},
    description="On the items with people's labels and a verdict of the router judge: the "
    "agreement of the final labels with the people's by share routed to people, per policy, "
    "with the oracle's ceiling and the budget's share (the report page's numbers).",
)
@api_view(["GET"])
def report(request, slug):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    return Response(ReportSerializer(selectors.routing_report(project)).data)
