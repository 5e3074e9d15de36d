"""Dataset versions over the API (/api/v1/projects/<slug>/datasets/...) and as a page
(/projects/<slug>/datasets/). Researchers and admins only; both call feedback_api.datasets."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django.views.decorators.vary import vary_on_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.access import can, project_for_user
from annotate.models import Project, Role
from annotate.services import ServiceError

from . import datasets
from .datasets import FORMATS, formats_for_kind
from .fields import NumberField, TextField
from .models import DOWNLOADS, DatasetVersion
from .pagination import IdCursorPagination
from .parsers import JSONParser
from .serializers import ErrorSerializer
from .views import errors, invalid

# Serializers --------------------------------------------------------------------------------


class DatasetFiltersSerializer(serializers.Serializer):
    source = serializers.ChoiceField(
        choices=list(datasets.SOURCES),
        default="both",
        help_text="both = human, judge, imported; people_first = people's labels (human, imported) "
        "where an item has any, else the judges'.",
    )
    min_agreement = NumberField(
        min_value=0, max_value=1, default=0.0, help_text="Leave out items whose labels agree less."
    )
    keep_single_label = serializers.BooleanField(
        default=True,
        help_text="Items with one label have no agreement (null): keep them (the default) or "
        "leave them out, whatever min_agreement.",
    )
    exclude_gold = serializers.BooleanField(default=False)
    since = serializers.DateField(
        required=False, allow_null=True, help_text="Labels from this day."
    )
    until = serializers.DateField(required=False, allow_null=True, help_text="Labels to this day.")
    annotators = serializers.ListField(
        child=TextField(max_length=200),
        default=list,
        max_length=1000,
        help_text="Only labels by these usernames or judge names (empty: everyone).",
    )


class DatasetSplitSerializer(serializers.Serializer):
    test_fraction = NumberField(min_value=0, max_value=0.99, default=0.1)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    by = TextField(
        max_length=200,
        default="prompt",
        help_text='Group key of the split: "prompt" (its content hash: every item of one prompt '
        'on one side) or a metadata field, e.g. "metadata.question_id" (every item needs it).',
    )


class DatasetOptionsSerializer(serializers.Serializer):
    metadata_fields = serializers.ListField(
        child=TextField(max_length=200),
        default=list,
        max_length=100,
        help_text="Top-level metadata fields flattened into columns `metadata.<field>` (the "
        "whole metadata is always the JSON column `metadata`).",
    )


class DatasetVersionCreateSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=list(FORMATS))
    filters = DatasetFiltersSerializer(required=False)
    split = DatasetSplitSerializer(required=False)
    options = DatasetOptionsSerializer(required=False)


class DatasetFileSerializer(serializers.Serializer):
    name = TextField()
    bytes = serializers.IntegerField()
    sha256 = TextField()
    url = TextField(help_text="Download URL.")


@extend_schema_field({"type": "object", "additionalProperties": True})
class StatsField(serializers.JSONField):
    pass


class DatasetVersionSerializer(serializers.ModelSerializer):
    number = serializers.IntegerField(read_only=True)
    progress = NumberField(read_only=True, help_text="Share of items read, 0 to 1.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    filters = DatasetFiltersSerializer(read_only=True)
    split = DatasetSplitSerializer(read_only=True)
    options = DatasetOptionsSerializer(read_only=True)
    stats = StatsField(read_only=True, help_text="The counts of the dataset card.")
    files = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersion
        fields = [
            "number",
            "format",
            "status",
            "progress",
            "items_done",
            "items_total",
            "error",
            "filters",
            "split",
            "options",
            "train_rows",
            "test_rows",
            "checksum",
            "stats",
            "card",
            "files",
            "created_by",
            "created_at",
            "finished_at",
            "url",
        ]

    def _url(self, version, name: str = "") -> str:
        args = [version.project.slug, version.number]
        if not name:
            return reverse("datasets:dataset-detail", args=args)
        return reverse("datasets:dataset-download", args=args) + f"?file={name}"

    @extend_schema_field(DatasetFileSerializer(many=True))
    def get_files(self, version) -> list[dict]:
        return [
            {
                "name": name,
                "bytes": info["bytes"],
                "sha256": info["sha256"],
                "url": self._url(version, name),
            }
            for name, info in version.files.items()
        ]

    def get_url(self, version) -> str:
        return self._url(version)


class DownloadQuerySerializer(serializers.Serializer):
    file = serializers.ChoiceField(choices=list(DOWNLOADS), default="archive")


class NotReady(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "This version is not built (yet): see its status."
    default_code = "not_ready"


# API ----------------------------------------------------------------------------------------


def _get_version(project: Project, number: int) -> DatasetVersion:
    return get_object_or_404(datasets.dataset_versions_for(project), number=number)


class DatasetListView(APIView):
    parser_classes = [JSONParser]
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="datasets_list",
        responses={200: DatasetVersionSerializer(many=True), **errors(400, 401, 403, 404)},
        description="The project's dataset versions, a page at a time (researchers and admins).",
    )
    def get(self, request, slug):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(datasets.dataset_versions_for(project), request, self)
        return paginator.get_paginated_response(DatasetVersionSerializer(page, many=True).data)

    @extend_schema(
        operation_id="datasets_create",
        request=DatasetVersionCreateSerializer,
        responses={202: DatasetVersionSerializer, **errors(400, 401, 403, 404, 415)},
        description="Start building a new version: a worker exports it; poll the version for "
        "its status and progress. The format must suit the project's kind.",
    )
    def post(self, request, slug):
        project = project_for_user(request.user, slug, Role.RESEARCHER)
        serializer = DatasetVersionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            version = datasets.dataset_version_create(
                project=project,
                user=request.user,
                format=data["format"],
                filters=_jsonable(data.get("filters")),
                split=data.get("split"),
                options=data.get("options"),
            )
        except ServiceError as exc:
            raise invalid(exc) from None
        body = DatasetVersionSerializer(version).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


def _jsonable(filters: dict | None) -> dict | None:
    if filters is None:
        return None
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in filters.items()}


@extend_schema(
    operation_id="datasets_retrieve",
    responses={200: DatasetVersionSerializer, **errors(401, 403, 404)},
    description="One version: status, progress, row counts, checksum and dataset card.",
)
@api_view(["GET"])
def dataset_detail(request, slug, number):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    return Response(DatasetVersionSerializer(_get_version(project, number)).data)


@extend_schema(
    operation_id="datasets_download",
    parameters=[DownloadQuerySerializer],
    responses={
        (200, "application/octet-stream"): OpenApiResponse(
            OpenApiTypes.BINARY, description="The file (`archive`: the zip of all of them)."
        ),
        409: OpenApiResponse(ErrorSerializer, description="The version is not built (yet)."),
        **errors(400, 401, 403, 404),
    },
)
@api_view(["GET"])
def dataset_download(request, slug, number):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    query = DownloadQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    version = _get_version(project, number)
    if version.status != DatasetVersion.Status.DONE:
        raise NotReady()
    name = query.validated_data["file"]
    path = version.file_path(name)
    if path is None or not path.exists():
        raise Http404("The file is gone from the server.")
    filename = version.archive_name if name == "archive" else f"{version.archive_name[:-4]}-{name}"
    return FileResponse(open(path, "rb"), as_attachment=True, filename=filename)  # noqa: SIM115


# Page ---------------------------------------------------------------------------------------


class DatasetForm(forms.Form):
    format = forms.ChoiceField()
    source = forms.ChoiceField(
        choices=[("both", "Human, judge and imported"), ("human", "Human"), ("judge", "Judge")]
    )
    min_agreement = forms.FloatField(min_value=0, max_value=1, initial=0, label="Minimum agreement")
    keep_single_label = forms.BooleanField(
        required=False,
        initial=True,
        label="Keep items with one label",
        help_text="One label has no agreement to measure: such items pass the minimum agreement "
        "when this is ticked.",
    )
    exclude_gold = forms.BooleanField(required=False, label="Leave out gold items")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    annotators = forms.CharField(
        required=False, help_text="Usernames or judge names, comma-separated; empty: everyone."
    )
    test_fraction = forms.FloatField(min_value=0, max_value=0.99, initial=0.1)
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0)
    split_by = forms.CharField(
        initial="prompt",
        max_length=200,
        label="Split by",
        help_text='"prompt" keeps every item of one prompt on one side; or a metadata field, '
        'e.g. "metadata.question_id".',
    )

    metadata_fields = forms.CharField(
        required=False,
        max_length=2000,
        label="Metadata columns",
        help_text="Top-level metadata fields to flatten into columns, comma-separated (the "
        "whole metadata is always exported as JSON).",
    )

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(f, DatasetVersion.Format(f).label) for f in formats_for_kind(project.kind)]
        self.fields["format"].choices = choices

    def service_arguments(self) -> dict:
        data = self.cleaned_data
        keys = ("source", "min_agreement", "keep_single_label", "exclude_gold")
        filters = {k: data[k] for k in keys}
        filters.update(
            since=data["since"].isoformat() if data["since"] else None,
            until=data["until"].isoformat() if data["until"] else None,
            annotators=[a.strip() for a in data["annotators"].split(",") if a.strip()],
        )
        split = {"test_fraction": data["test_fraction"], "seed": data["seed"]}
        split["by"] = data["split_by"]
        options = {"metadata_fields": [f for f in data["metadata_fields"].split(",") if f.strip()]}
        return {"format": data["format"], "filters": filters, "split": split, "options": options}


@login_required
@require_http_methods(["GET", "POST"])
# One URL answers with the page or its #versions partial: caches must tell them apart.
@vary_on_headers("HX-Request")
def dataset_page(request, slug):
    project = project_for_user(request.user, slug, Role.RESEARCHER)
    form = DatasetForm(request.POST or None, project=project)
    if request.method == "POST" and form.is_valid():
        try:
            version = datasets.dataset_version_create(
                project=project, user=request.user, **form.service_arguments()
            )
        except ServiceError as exc:
            renamed = {"split.by": "split_by"}
            field = renamed.get(exc.field, exc.field.split(".")[-1])
            form.add_error(field if field in form.fields else None, str(exc))
        else:
            messages.success(request, f"Version {version.number} is being built.")
            return redirect("dataset-pages:datasets", project.slug)
    versions = list(datasets.dataset_versions_for(project)[:50])
    context = {
        "project": project,
        "form": form,
        "versions": versions,
        "building": any(not v.finished for v in versions),
        "can_train": can(request.user, project, Role.ADMIN),
    }
    template = "feedback_api/datasets.html"
    if request.htmx and request.method == "GET":
        template += "#versions"
    return render(request, template, context, status=400 if form.errors else 200)
