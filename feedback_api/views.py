"""The REST API, /api/v1/. Each view checks the project role, validates with a serializer, calls
a service or a selector, and shapes the answer with a serializer."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import assignment as engine
from annotate import services
from annotate.access import can_create_projects, project_for_user
from annotate.assignment import AssignmentConflict
from annotate.models import Assignment, ImportJob, Role
from annotate.services import ServiceError

from . import selectors
from . import services as api_services
from .filters import (
    AnnotationFilterSerializer,
    ItemFilterSerializer,
    filter_annotations,
    filter_items,
)
from .pagination import IdCursorPagination
from .parsers import JSONParser
from .serializers import (
    AnnotationSerializer,
    AnnotatorProgressSerializer,
    AssignmentSerializer,
    AssignmentSkipSerializer,
    AssignmentSubmitSerializer,
    ErrorSerializer,
    ImportJobSerializer,
    ImportReportSerializer,
    ItemBulkCreateSerializer,
    ItemImportSerializer,
    ItemSerializer,
    MemberAddSerializer,
    MemberRoleSerializer,
    MemberSerializer,
    ProjectCreateSerializer,
    ProjectSerializer,
    ProjectStatsSerializer,
    ProjectUpdateSerializer,
    represent,
)

ERROR_TEXT = {
    400: "Invalid input: each bad field or parameter with its messages.",
    401: "No valid token or session.",
    403: "Your role in the project is too low for this.",
    404: "No such project or object, or not one of yours.",
    413: "The body is over its size limit (IMPORT_MAX_BYTES for files; see README).",
    415: "The body must be JSON.",
    429: "Too many requests or failed logins: wait the seconds the Retry-After header says.",
}


# The id converter takes any path segment (a malformed id is a JSON 404): the schema says int.
ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)


def errors(*codes: int) -> dict:
    """The error responses of an operation, for extend_schema."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_TEXT[code]) for code in codes}


def invalid(exc: ServiceError) -> ValidationError:
    """A service's refusal as a 400 naming the field at fault."""
    return ValidationError({exc.field or "non_field_errors": [str(exc)]})


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _import_response(report, *, skip_invalid: bool) -> Response:
    ok = not report.fatal and (report.ok or skip_invalid)
    code = status.HTTP_201_CREATED if ok else status.HTTP_400_BAD_REQUEST
    return Response(ImportReportSerializer(report.to_dict()).data, status=code)


IMPORT_ERRORS = PolymorphicProxySerializer(
    component_name="ImportError",
    serializers=[ImportReportSerializer, ErrorSerializer],
    resource_type_field_name=None,
)


# Projects -----------------------------------------------------------------------------------


class ProjectListView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="projects_list",
        responses={200: ProjectSerializer(many=True), **errors(401)},
        description="Your projects, by name (all of them for a superuser).",
    )
    def get(self, request):
        projects = selectors.projects_for_user(request.user)
        return Response(ProjectSerializer(projects, many=True, context={"request": request}).data)

    @extend_schema(
        operation_id="projects_create",
        request=ProjectCreateSerializer,
        responses={201: ProjectSerializer, **errors(400, 401, 403, 415)},
        description="Create a project (staff users only); you become its admin.",
    )
    def post(self, request):
        if not can_create_projects(request.user):
            raise PermissionDenied("Only staff users can create projects.")
        data = _valid(ProjectCreateSerializer, request.data)
        try:
            project = services.project_create(**data, created_by=request.user)
        except ServiceError as exc:
            raise invalid(exc) from None
        body = ProjectSerializer(project, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED)


class ProjectDetailView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="projects_retrieve", responses={200: ProjectSerializer, **errors(401, 404)}
    )
    def get(self, request, slug):
        project = project_for_user(request.user, slug, Role.ANNOTATOR)
        return Response(ProjectSerializer(project, context={"request": request}).data)

    @extend_schema(
        operation_id="projects_update",
        request=ProjectUpdateSerializer,
        responses={200: ProjectSerializer, **errors(400, 401, 403, 404, 415)},
        description="Change the kind config, guidelines or overlap (project admins). A config "
        "is validated by the project's kind; omitted keys take the kind's defaults.",
    )
    def patch(self, request, slug):
        project = project_for_user(request.user, slug, Role.ADMIN)
        data = _valid(ProjectUpdateSerializer, request.data)
        try:
            project = api_services.project_update(project=project, **data)
        except ServiceError as exc:
            raise invalid(exc) from None
        return Response(ProjectSerializer(project, context={"request": request}).data)


@extend_schema(
    operation_id="projects_stats",
    responses={200: ProjectStatsSerializer, **errors(401, 404)},
    description="Counts: items, labeled items, labels by source, members by role.",
)
@api_view(["GET"])
def project_stats(request, slug):
    project = project_for_user(request.user, slug, Role.ANNOTATOR)
    return Response(ProjectStatsSerializer(selectors.project_stats(project)).data)


# Members ------------------------------------------------------------------------------------


class MemberListView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="members_list",
        responses={200: MemberSerializer(many=True), **errors(401, 403, 404)},
        description="The project's members by username (researchers and admins).",
    )
    def get(self, request, slug):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        members = selectors.members_for_project(project)
        return Response(MemberSerializer(members, many=True).data)

    @extend_schema(
        operation_id="members_set",
        request=MemberAddSerializer,
        responses={
            201: OpenApiResponse(MemberSerializer, description="Added."),
            200: OpenApiResponse(MemberSerializer, description="Already a member: role changed."),
            **errors(400, 401, 403, 404, 415),
        },
        description="Add a user with a role, or change a member's role (project admins).",
    )
    def post(self, request, slug):
        project = project_for_user(request.user, slug, Role.ADMIN)
        data = _valid(MemberAddSerializer, request.data)
        try:
            membership, created = api_services.project_member_set(project=project, **data)
        except ServiceError as exc:
            raise invalid(exc) from None
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(MemberSerializer(membership).data, status=code)


class MemberDetailView(APIView):
    parser_classes = [JSONParser]

    def _membership(self, project, username: str | None):
        if username is None:
            raise Http404("No such member.")
        return get_object_or_404(selectors.members_for_project(project), user__username=username)

    @extend_schema(
        operation_id="members_retrieve",
        responses={200: MemberSerializer, **errors(401, 403, 404)},
    )
    def get(self, request, slug, username):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        return Response(MemberSerializer(self._membership(project, username)).data)

    @extend_schema(
        operation_id="members_update",
        request=MemberRoleSerializer,
        responses={200: MemberSerializer, **errors(400, 401, 403, 404, 415)},
        description="Change a member's role (project admins); the last admin cannot step down.",
    )
    def patch(self, request, slug, username):
        project = project_for_user(request.user, slug, Role.ADMIN)
        self._membership(project, username)
        data = _valid(MemberRoleSerializer, request.data)
        try:
            membership, _ = api_services.project_member_set(
                project=project, username=username, role=data["role"]
            )
        except ServiceError as exc:
            raise invalid(exc) from None
        return Response(MemberSerializer(membership).data)

    @extend_schema(
        operation_id="members_remove",
        responses={204: None, **errors(400, 401, 403, 404)},
        description="Remove a member (project admins); the last admin cannot leave.",
    )
    def delete(self, request, slug, username):
        project = project_for_user(request.user, slug, Role.ADMIN)
        self._membership(project, username)
        try:
            api_services.project_member_remove(project=project, username=username)
        except ServiceError as exc:
            raise invalid(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


# Items --------------------------------------------------------------------------------------


class ItemListView(APIView):
    parser_classes = [JSONParser]
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="items_list",
        parameters=[ItemFilterSerializer],
        responses={200: ItemSerializer(many=True), **errors(400, 401, 403, 404)},
        description="Items, a page at a time (researchers and admins); follow `next` to walk "
        "them all. `human_labels` counts human labels, `labels` labels of any source.",
    )
    def get(self, request, slug):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        filters = _valid(ItemFilterSerializer, request.query_params)
        items = filter_items(selectors.items_for_project(project), filters)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response(ItemSerializer(page, many=True).data)

    @extend_schema(
        operation_id="items_create",
        request=ItemBulkCreateSerializer,
        responses={201: ImportReportSerializer, 400: IMPORT_ERRORS, **errors(401, 403, 404, 415)},
        description="Create items from JSON, validated and deduplicated exactly like a file "
        "import: with any bad item nothing is created unless skip_invalid is set; an "
        "external_id the project has is skipped and counted. A 400 is the import report, or "
        "field errors when the body itself is malformed.",
    )
    def post(self, request, slug):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        data = _valid(ItemBulkCreateSerializer, request.data)
        report = api_services.items_create(
            project=project,
            records=data["items"],
            skip_invalid=data["skip_invalid"],
            keep_labels=data["keep_labels"],
            labels_for_existing=data["labels_for_existing"],
        )
        return _import_response(report, skip_invalid=data["skip_invalid"])


@extend_schema(
    operation_id="items_retrieve",
    parameters=[ID],
    responses={200: ItemSerializer, **errors(401, 403, 404)},
)
@api_view(["GET"])
def item_detail(request, slug, pk):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    if pk is None:
        raise Http404("No such item.")
    item = get_object_or_404(selectors.items_for_project(project), pk=pk)
    return Response(ItemSerializer(item).data)


@extend_schema(
    operation_id="items_import",
    request=ItemImportSerializer,
    responses={
        201: ImportReportSerializer,
        202: OpenApiResponse(
            ImportJobSerializer, description="A large file: imported by a worker; poll `url`."
        ),
        400: IMPORT_ERRORS,
        **errors(401, 403, 404, 413, 415),
    },
    description="Import items from a file. A file with any bad row imports nothing unless "
    "skip_invalid is set; re-imported external_ids are skipped and counted. A file of "
    f"{settings.IMPORT_ASYNC_BYTES:,} bytes or more is imported by a worker: the answer is a "
    "202 with the job, whose `url` tells its progress and, once finished, its report.",
)
@api_view(["POST"])
@parser_classes([MultiPartParser, FormParser])
def item_import(request, slug):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    data = _valid(ItemImportSerializer, request.data)
    upload = data["file"]
    if upload.size >= settings.IMPORT_ASYNC_BYTES:
        return _import_job_start(request, project, upload, data)
    report = services.item_import(
        project=project,
        stream=upload.open("rb"),
        filename=upload.name,
        size=upload.size,
        fmt=data.get("format"),
        skip_invalid=data["skip_invalid"],
        keep_labels=data["keep_labels"],
        labels_for_existing=data["labels_for_existing"],
    )
    return _import_response(report, skip_invalid=data["skip_invalid"])


def _import_job_start(request, project, upload, data: dict) -> Response:
    try:
        job = services.import_job_create(
            project=project,
            upload=upload,
            user=request.user,
            skip_invalid=data["skip_invalid"],
            keep_labels=data["keep_labels"],
            labels_for_existing=data["labels_for_existing"],
            fmt=data.get("format"),
        )
    except ServiceError as exc:
        raise invalid(exc) from None
    body = ImportJobSerializer(job, context={"request": request}).data
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


@extend_schema(
    operation_id="imports_retrieve",
    parameters=[ID],
    responses={200: ImportJobSerializer, **errors(401, 403, 404)},
    description="A file import run by a worker: its status, progress and, once finished, its "
    "report (researchers and admins).",
)
@api_view(["GET"])
def import_job_detail(request, slug, pk):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    if pk is None:
        raise Http404("No such import.")
    job = get_object_or_404(ImportJob, pk=pk, project=project)
    return Response(ImportJobSerializer(job, context={"request": request}).data)


# Annotations --------------------------------------------------------------------------------


class AnnotationListView(APIView):
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="annotations_list",
        parameters=[AnnotationFilterSerializer],
        responses={200: AnnotationSerializer(many=True), **errors(400, 401, 403, 404)},
        description="Labels of the project's items with their provenance, a page at a time "
        "(researchers and admins).",
    )
    def get(self, request, slug):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        filters = _valid(AnnotationFilterSerializer, request.query_params)
        annotations = filter_annotations(selectors.annotations_for_project(project), filters)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(annotations, request, view=self)
        return paginator.get_paginated_response(AnnotationSerializer(page, many=True).data)


# Assignments --------------------------------------------------------------------------------

CONFLICT = {
    409: OpenApiResponse(
        ErrorSerializer, description="The assignment was skipped, submitted or lost meanwhile."
    )
}


def _get_assignment_for_user(request, pk: int | None) -> Assignment:
    """The user's own assignment in a project they are still in; anything else is a 404."""
    assignment = None if pk is None else engine.assignment_for_annotator(pk=pk, user=request.user)
    if assignment is None:
        raise Http404("No such assignment.")
    return assignment


def _refused(exc: ServiceError) -> Exception:
    if isinstance(exc, AssignmentConflict):
        return Conflict({"non_field_errors": [str(exc)]})
    return invalid(exc)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Conflict."
    default_code = "conflict"


@extend_schema(
    operation_id="assignments_next",
    request=None,
    responses={
        200: AssignmentSerializer,
        204: OpenApiResponse(description="Nothing left for you in this project."),
        **errors(401, 404),
    },
    description="Lease the next item to label: your own unexpired lease first, else an item "
    "you have not seen, fewest human labels first, then priority.",
)
@api_view(["POST"])
def assignment_next(request, slug):
    # The hot path: project and membership in one query (any role may label).
    project = engine.project_for_annotator(slug=slug, user=request.user)
    if project is None:
        raise Http404("No such project.")
    assignment = engine.assignment_next(project=project, annotator=request.user)
    if assignment is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    assignment.item.project = project
    return Response(represent(AssignmentSerializer, assignment))


@extend_schema(
    operation_id="assignments_submit",
    parameters=[ID],
    request=AssignmentSubmitSerializer,
    responses={
        201: AnnotationSerializer,
        200: OpenApiResponse(AnnotationSerializer, description="Submitted before: that label."),
        **errors(400, 401, 404, 415),
        **CONFLICT,
    },
    description="Store your label for an assignment. Repeating the request stores nothing new "
    "and answers 200 with the stored label.",
)
@api_view(["POST"])
@parser_classes([JSONParser])
def assignment_submit(request, pk):
    assignment = _get_assignment_for_user(request, pk)
    data = _valid(AssignmentSubmitSerializer, request.data)
    try:
        annotation, created = engine.annotation_submit_or_get(
            assignment=assignment, annotator=request.user, **data
        )
    except ServiceError as exc:
        raise _refused(exc) from None
    code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return Response(represent(AnnotationSerializer, annotation), status=code)


@extend_schema(
    operation_id="assignments_skip",
    parameters=[ID],
    request=AssignmentSkipSerializer,
    responses={200: AssignmentSerializer, **errors(400, 401, 404, 415), **CONFLICT},
    description="Skip an assignment with a reason; the item is not offered to you again.",
)
@api_view(["POST"])
@parser_classes([JSONParser])
def assignment_skip(request, pk):
    assignment = _get_assignment_for_user(request, pk)
    data = _valid(AssignmentSkipSerializer, request.data)
    try:
        assignment = engine.assignment_skip(
            assignment=assignment, annotator=request.user, reason=data["reason"]
        )
    except ServiceError as exc:
        raise _refused(exc) from None
    return Response(AssignmentSerializer(assignment).data)


@extend_schema(
    operation_id="assignments_release",
    parameters=[ID],
    request=None,
    responses={200: AssignmentSerializer, **errors(401, 404), **CONFLICT},
    description="Give a lease back before it expires: the item returns to the pool now, and "
    "you may be offered it again later. Releasing twice answers the same.",
)
@api_view(["POST"])
def assignment_release(request, pk):
    assignment = _get_assignment_for_user(request, pk)
    try:
        assignment = engine.assignment_release(assignment=assignment, annotator=request.user)
    except ServiceError as exc:
        raise _refused(exc) from None
    return Response(AssignmentSerializer(assignment).data)


@extend_schema(
    operation_id="assignments_progress",
    responses={200: AnnotatorProgressSerializer, **errors(401, 404)},
    description="Your progress in the project: your labels and skips, and how many of its "
    "regular items have all their human labels (counted every few seconds).",
)
@api_view(["GET"])
def assignment_progress(request, slug):
    project = project_for_user(request.user, slug, Role.ANNOTATOR)
    progress = engine.annotator_progress(project, request.user)
    return Response(AnnotatorProgressSerializer(progress).data)
