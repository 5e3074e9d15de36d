"""The judges REST API, under /api/v1/ (judges/api_urls.py): a project's judges, their prompt
preview, runs with their progress, a run's verdicts and judgments.

Built on feedback_api's shared pieces: its authentication and permissions (REST_FRAMEWORK
settings), errors and id-cursor pagination, and annotate.access.project_for_user. Researchers
read; admins configure, run and cancel; only admins ever get a judge's api_key_env.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.access import can, project_for_user
from annotate.models import Judge, Project, Role
from feedback_api.pagination import IdCursorPagination
from feedback_api.parsers import JSONParser
from feedback_api.views import ID, errors

from . import calibration, selectors, services
from .models import JudgeRun
from .prompts import PromptError
from .serializers import (
    JudgeSerializer,
    JudgeWriteSerializer,
    JudgmentSerializer,
    PreviewRequestSerializer,
    PreviewSerializer,
    RunCreateSerializer,
    RunDetailSerializer,
    RunSerializer,
    VerdictSerializer,
)


def _invalid(exc: services.ServiceError | PromptError) -> ValidationError:
    return ValidationError({exc.field or "non_field_errors": [exc.message]})


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _judge_body(request, project: Project, judge: Judge) -> dict:
    show_key = can(request.user, project, Role.ADMIN)
    return JudgeSerializer(judge, context={"show_key": show_key}).data


def _judges_by_id(project: Project, ids: list[int], field: str) -> list[Judge]:
    judges = {j.pk: j for j in Judge.objects.filter(project=project, pk__in=ids)}
    missing = [i for i in ids if i not in judges]
    if missing:
        raise ValidationError({field: [f"no judge {missing[0]} in this project"]})
    return [judges[i] for i in dict.fromkeys(ids)]


def _save(request, project: Project, judge: Judge | None) -> Judge:
    data = dict(_valid(JudgeWriteSerializer, request.data))
    if "members" in data:
        data["members"] = _judges_by_id(project, data["members"], "members")
    try:
        return services.judge_save(project=project, data=data, judge=judge)
    except (services.ServiceError, PromptError) as exc:
        raise _invalid(exc) from None


# Judges -------------------------------------------------------------------------------------


class JudgeListView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="judges_list",
        responses={200: JudgeSerializer(many=True), **errors(401, 403, 404)},
        description="The project's judges by name (researchers and admins; api_key_env only "
        "for admins).",
    )
    def get(self, request, slug):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        show_key = can(request.user, project, Role.ADMIN)
        judges = selectors.judges_for(project)
        body = JudgeSerializer(judges, many=True, context={"show_key": show_key}).data
        return Response(body)

    @extend_schema(
        operation_id="judges_create",
        request=JudgeWriteSerializer,
        responses={201: JudgeSerializer, **errors(400, 401, 403, 404, 415)},
        description="Configure a judge (project admins). Omitted settings take their defaults; "
        "empty prompts follow the kind's.",
    )
    def post(self, request, slug):
        project = project_for_user(request.user, slug, Role.ADMIN)
        judge = _save(request, project, None)
        return Response(_judge_body(request, project, judge), status=status.HTTP_201_CREATED)


class JudgeDetailView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="judges_retrieve",
        parameters=[ID],
        responses={200: JudgeSerializer, **errors(401, 403, 404)},
    )
    def get(self, request, slug, pk):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        return Response(_judge_body(request, project, selectors.judge_or_404(project, pk)))

    @extend_schema(
        operation_id="judges_update",
        parameters=[ID],
        request=JudgeWriteSerializer,
        responses={200: JudgeSerializer, **errors(400, 401, 403, 404, 415)},
        description="Change any of a judge's settings (project admins).",
    )
    def patch(self, request, slug, pk):
        project = project_for_user(request.user, slug, Role.ADMIN)
        judge = _save(request, project, selectors.judge_or_404(project, pk))
        return Response(_judge_body(request, project, judge))


@extend_schema(
    operation_id="judges_preview",
    parameters=[ID],
    request=PreviewRequestSerializer,
    responses={200: PreviewSerializer, **errors(400, 401, 403, 404, 415)},
    description="The messages each pass of an item would send with the judge's saved settings; "
    "nothing is called or saved (researchers and admins).",
)
@api_view(["POST"])
@parser_classes([JSONParser])
def judge_preview(request, slug, pk):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    judge = selectors.judge_or_404(project, pk)
    external_id = _valid(PreviewRequestSerializer, request.data).get("item", "")
    item = selectors.preview_item(project, external_id)
    if item is None:
        raise ValidationError(
            {
                "item": [
                    "no such item in this project"
                    if external_id
                    else "the project has no items yet"
                ]
            }
        )
    try:
        passes = services.judge_preview(judge=judge, item=item)
    except PromptError as exc:
        raise _invalid(exc) from None
    return Response(PreviewSerializer({"item": item.external_id, "passes": passes}).data)


@extend_schema(
    operation_id="judges_calibration",
    parameters=[
        ID,
        OpenApiParameter("version", str, description="A prompt version (default: the latest)."),
    ],
    responses={200: OpenApiTypes.OBJECT, **errors(400, 401, 403, 404)},
    description="The judge's calibration report against the human labels (judges.calibration): "
    "agreement with and without ties, Cohen's kappa, position consistency, flip rate, "
    "first-position wins, length bias, self-preference, each with n and its published anchor, "
    "and whether it is fit to label alone, with the reasons (researchers and admins).",
)
@api_view(["GET"])
def judge_calibration(request, slug, pk):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    judge = selectors.judge_or_404(project, pk)
    try:
        report = calibration.report(judge, request.query_params.get("version") or None)
    except ValueError as exc:
        raise ValidationError({"version": [str(exc)]}) from None
    return Response(report)


# Runs ---------------------------------------------------------------------------------------


class RunListView(APIView):
    parser_classes = [JSONParser]
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="judge_runs_list",
        responses={200: RunSerializer(many=True), **errors(400, 401, 403, 404)},
        description="The project's judge runs, a page at a time (researchers and admins).",
    )
    def get(self, request, slug):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.judge_runs_for(project), request, view=self)
        return paginator.get_paginated_response(RunSerializer(page, many=True).data)

    @extend_schema(
        operation_id="judge_runs_create",
        request=RunCreateSerializer,
        responses={201: RunDetailSerializer, **errors(400, 401, 403, 404, 415)},
        description="Start a run (project admins): one judgment per item and pass not judged "
        "before under the judge's prompt version; a jury brings its members.",
    )
    def post(self, request, slug):
        project = project_for_user(request.user, slug, Role.ADMIN)
        data = _valid(RunCreateSerializer, request.data)
        judges = _judges_by_id(project, data["judges"], "judges")
        try:
            run = services.run_start(
                project=project,
                judges=judges,
                selection=data["selection"],
                user=request.user,
                external_ids=data["external_ids"],
                limit=data.get("limit"),
                metadata_filter=data["metadata_filter"],
                purpose=data["purpose"],
            )
        except services.ServiceError as exc:
            raise _invalid(exc) from None
        run = selectors.judge_run_or_404(project, run.pk)
        return Response(RunDetailSerializer(run).data, status=status.HTTP_201_CREATED)


@extend_schema(
    operation_id="judge_runs_retrieve",
    parameters=[ID],
    responses={200: RunDetailSerializer, **errors(401, 403, 404)},
    description="A run with its progress: the numbers of its page.",
)
@api_view(["GET"])
def run_detail(request, slug, pk):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    return Response(RunDetailSerializer(selectors.judge_run_or_404(project, pk)).data)


@extend_schema(
    operation_id="judge_runs_cancel",
    parameters=[ID],
    request=None,
    responses={200: RunDetailSerializer, **errors(401, 403, 404)},
    description="Stop a run (project admins): its workers stop at their next claim; what was "
    "judged stays. Cancelling a finished run changes nothing.",
)
@api_view(["POST"])
def run_cancel(request, slug, pk):
    project = project_for_user(request.user, slug, Role.ADMIN)
    run = services.run_cancel(run=selectors.judge_run_or_404(project, pk))
    return Response(RunDetailSerializer(run).data)


class _RunRowsView(APIView):
    """A run's rows of one model, a page at a time (researchers and admins)."""

    pagination_class = IdCursorPagination
    serializer_class = VerdictSerializer

    def rows(self, run: JudgeRun):
        raise NotImplementedError

    def get(self, request, slug, pk):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        rows = (
            self.rows(selectors.judge_run_or_404(project, pk))
            .select_related("item")
            .defer("item__responses")
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(self.serializer_class(page, many=True).data)


@extend_schema_view(
    get=extend_schema(
        operation_id="judge_runs_verdicts",
        parameters=[ID],
        responses={200: VerdictSerializer(many=True), **errors(400, 401, 403, 404)},
        description="A run's verdicts (agreed, inconsistent, failed), a page at a time.",
    )
)
class RunVerdictsView(_RunRowsView):
    serializer_class = VerdictSerializer

    def rows(self, run: JudgeRun):
        return run.verdicts.all()


@extend_schema_view(
    get=extend_schema(
        operation_id="judge_runs_judgments",
        parameters=[ID],
        responses={200: JudgmentSerializer(many=True), **errors(400, 401, 403, 404)},
        description="A run's judgments (one per item and pass) with raw replies, a page at a time.",
    )
)
class RunJudgmentsView(_RunRowsView):
    serializer_class = JudgmentSerializer

    def rows(self, run: JudgeRun):
        return run.judgments.all()
