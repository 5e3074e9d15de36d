"""Request and response shapes of the API. Serializers validate and shape; they write nothing."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotate.importing import FORMATS
from annotate.models import Annotation, ImportJob, Item, Kind, Membership, Project, Role
from annotate.storable import json_problem
from config import runtime

from .fields import TextField

MAX_BULK_ITEMS = 10_000

MESSAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]},
        "content": {"type": "string"},
    },
    "required": ["role", "content"],
}
PROMPT_SCHEMA = {
    "oneOf": [{"type": "string"}, {"type": "array", "items": MESSAGE_SCHEMA}],
    "description": "Text, or a list of chat messages.",
}
ITEM_RECORD_SCHEMA = {
    "type": "object",
    "description": "One item, in any shape a file import accepts: our own "
    "(external_id, prompt, responses, metadata, priority, gold, label) or TRL's "
    "(prompt, chosen, rejected; or only chosen/rejected with the prompt as their shared "
    "beginning; optional chosen_id/rejected_id and chosen_model/rejected_model are kept on the "
    "two responses). Validated row by row exactly like a file import.",
    "properties": {
        "external_id": {"type": "string"},
        "prompt": PROMPT_SCHEMA,
        "responses": {
            "type": "array",
            "items": {
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "text": {"type": "string"},
                            "model": {"type": "string"},
                        },
                        "required": ["text"],
                    },
                ]
            },
        },
        "metadata": {"type": "object", "additionalProperties": True},
        "priority": {"type": "integer"},
        "gold": {"type": "object", "additionalProperties": True},
        "label": {"type": "object", "additionalProperties": True},
        "chosen": {"oneOf": [{"type": "string"}, {"type": "array", "items": MESSAGE_SCHEMA}]},
        "rejected": {"oneOf": [{"type": "string"}, {"type": "array", "items": MESSAGE_SCHEMA}]},
        "chosen_id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "rejected_id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "chosen_model": {"type": "string"},
        "rejected_model": {"type": "string"},
    },
    "additionalProperties": True,
}
ERROR_SCHEMA = {
    "type": "object",
    "description": "`detail` for errors of the whole request (401, 403, 404, 405, 413, 415, 429); "
    "for a "
    "400, each bad field or parameter names its messages (nested fields as objects), and "
    "`non_field_errors` holds the rest.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}]
    },
}


def represent(serializer_class, instance) -> dict:
    """`serializer_class(instance).data` for an answer, without building the serializer's fields
    again for every instance: one serializer per class and thread, for shaping only (it never
    validates, so it holds no request's state)."""
    return runtime.per_thread(serializer_class).to_representation(instance)


class ErrorSerializer(serializers.Serializer):
    """Documents error bodies only (see ERROR_SCHEMA); never used to validate."""


class ErrorSerializerExtension(OpenApiSerializerExtension):
    target_class = ErrorSerializer

    def map_serializer(self, auto_schema, direction):
        return ERROR_SCHEMA


def storable_json(value, path: str = "") -> None:
    """Reject what no database stores (annotate.storable): NUL characters, lone surrogates,
    whole numbers past 64 bits, nesting past MAX_JSON_DEPTH."""
    problem = json_problem(value, path)
    if problem:
        where, why = problem
        raise serializers.ValidationError(f"{where or 'value'}: {why}")


@extend_schema_field(PROMPT_SCHEMA)
class PromptField(serializers.JSONField):
    pass


@extend_schema_field({"type": "object", "additionalProperties": True, "nullable": True})
class NullableObjectField(serializers.JSONField):
    pass


@extend_schema_field(ITEM_RECORD_SCHEMA)
class ItemRecordField(serializers.DictField):
    pass


# Projects -----------------------------------------------------------------------------------


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role in the project.")

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "slug",
            "kind",
            "config",
            "guidelines",
            "overlap",
            "created_at",
            "role",
        ]

    @extend_schema_field(serializers.ChoiceField(choices=Role.choices, allow_null=True))
    def get_role(self, project) -> str | None:
        if hasattr(project, "my_role"):
            return project.my_role
        return project.role_of(self.context["request"].user)


class ProjectCreateSerializer(serializers.Serializer):
    name = TextField(max_length=200)
    kind = serializers.ChoiceField(choices=Kind.choices)
    config = serializers.DictField(
        required=False,
        default=dict,
        validators=[storable_json],
        help_text="Kind settings; omitted keys take the kind's defaults.",
    )
    guidelines = TextField(required=False, allow_blank=True, default="", max_length=100_000)
    overlap = serializers.IntegerField(
        required=False, default=1, min_value=1, max_value=100, help_text="Human labels per item."
    )


class ProjectUpdateSerializer(serializers.Serializer):
    config = serializers.DictField(
        required=False,
        validators=[storable_json],
        help_text="The whole kind config; omitted keys take the kind's defaults.",
    )
    guidelines = TextField(required=False, allow_blank=True, max_length=100_000)
    overlap = serializers.IntegerField(required=False, min_value=1, max_value=100)


class ProjectStatsSerializer(serializers.Serializer):
    class AnnotationCounts(serializers.Serializer):
        human = serializers.IntegerField()
        judge = serializers.IntegerField()
        imported = serializers.IntegerField()
        total = serializers.IntegerField()

    class MemberCounts(serializers.Serializer):
        annotator = serializers.IntegerField()
        researcher = serializers.IntegerField()
        admin = serializers.IntegerField()

    items = serializers.IntegerField()
    labeled_items = serializers.IntegerField(help_text="Items with at least one label.")
    human_labeled_items = serializers.IntegerField(help_text="Items with a human label.")
    annotations = AnnotationCounts(help_text="Labels by source.")
    members = MemberCounts(help_text="Members by role.")


# Members ------------------------------------------------------------------------------------


class MemberSerializer(serializers.ModelSerializer):
    username = TextField(source="user.username")

    class Meta:
        model = Membership
        fields = ["username", "role", "created_at"]


class MemberAddSerializer(serializers.Serializer):
    username = TextField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.ANNOTATOR)


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


# Items --------------------------------------------------------------------------------------


class ResponseSerializer(serializers.Serializer):
    id = TextField()
    text = TextField()
    model = TextField(required=False, allow_blank=True)


class ItemSerializer(serializers.ModelSerializer):
    prompt = PromptField()
    responses = ResponseSerializer(many=True)
    metadata = serializers.DictField()
    gold_label = NullableObjectField(help_text="Known answer, for gold checks.")
    human_labels = serializers.IntegerField(read_only=True)
    labels = serializers.IntegerField(read_only=True, help_text="Labels of any source.")
    route = serializers.ChoiceField(
        choices=Item.Route.choices,
        read_only=True,
        help_text="Who labels it (set by the router); why: the routing API's "
        "items/{external_id}/route/.",
    )

    class Meta:
        model = Item
        fields = [
            "id",
            "external_id",
            "prompt",
            "responses",
            "metadata",
            "priority",
            "gold_label",
            "created_at",
            "human_labels",
            "labels",
            "route",
        ]


LABELS_FOR_EXISTING = (
    "Also add the labels to items already there (a label equal to one imported before is not "
    "added again); implies keep_labels. Without it their labels are counted as skipped."
)


class ItemBulkCreateSerializer(serializers.Serializer):
    items = serializers.ListField(
        child=ItemRecordField(), min_length=1, max_length=MAX_BULK_ITEMS, validators=[storable_json]
    )
    skip_invalid = serializers.BooleanField(
        default=False, help_text="Import the good items even when some are bad."
    )
    keep_labels = serializers.BooleanField(
        default=False, help_text="Keep each item's `label` as an imported annotation."
    )
    labels_for_existing = serializers.BooleanField(default=False, help_text=LABELS_FOR_EXISTING)


class ItemImportSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="JSONL, JSON (one array) or CSV")
    format = serializers.ChoiceField(
        choices=FORMATS, required=False, help_text="default: from the file name"
    )
    skip_invalid = serializers.BooleanField(default=False)
    keep_labels = serializers.BooleanField(default=False)
    labels_for_existing = serializers.BooleanField(default=False, help_text=LABELS_FOR_EXISTING)


class RowErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="Line in the file; for a JSON body, item index + 1.")
    field = TextField(allow_blank=True)
    message = TextField()


class ImportReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    summary = TextField()
    rows = serializers.IntegerField()
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    invalid = serializers.IntegerField()
    labels = serializers.IntegerField()
    labels_skipped_existing = serializers.IntegerField(
        help_text="Labels of rows whose item was already there, not kept (no labels_for_existing)."
    )
    labels_already_there = serializers.IntegerField(
        help_text="Labels equal to an imported label their item already has, not added again."
    )
    labels_other_responses = serializers.IntegerField(
        help_text="Labels not kept: their item is already there with other responses."
    )
    fatal = TextField(allow_blank=True)
    errors = RowErrorSerializer(many=True)


class ImportJobReportSerializer(ImportReportSerializer):
    """The report of a finished job: empty while it runs; only `fatal` when the worker failed."""

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            field.required = False
        return fields


class ImportJobSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(min_value=0, max_value=100)
    report = ImportJobReportSerializer()
    url = serializers.SerializerMethodField(help_text="Poll this for progress and the report.")

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "status",
            "filename",
            "percent",
            "bytes_done",
            "size_bytes",
            "report",
            "created_at",
            "finished_at",
            "url",
        ]

    def get_url(self, job) -> str:
        path = reverse("api:import-job", kwargs={"slug": job.project.slug, "pk": job.pk})
        return self.context["request"].build_absolute_uri(path)


# Annotations --------------------------------------------------------------------------------


class AnnotationSerializer(serializers.ModelSerializer):
    item = serializers.IntegerField(source="item_id")
    item_external_id = TextField(source="item.external_id")
    annotator = TextField(source="annotator.username", allow_null=True, default=None)
    judge = TextField(source="judge.name", allow_null=True, default=None)
    label = serializers.DictField(help_text="Canonical label of the project's kind.")
    source = serializers.ChoiceField(choices=Annotation.Source.choices)

    class Meta:
        model = Annotation
        fields = [
            "id",
            "item",
            "item_external_id",
            "source",
            "annotator",
            "judge",
            "kind",
            "label",
            "time_spent_ms",
            "origin",
            "judge_model",
            "prompt_version",
            "raw_output",
            "tokens_in",
            "tokens_out",
            "cost_usd",
            "created_at",
        ]


# Tokens -------------------------------------------------------------------------------------


class TokenObtainSerializer(serializers.Serializer):
    username = TextField(max_length=150)
    password = TextField(max_length=4096, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = TextField(source="key", help_text="Send as `Authorization: Token <key>`.")
    username = TextField(source="user.username")
    created = serializers.DateTimeField()


# Assignments --------------------------------------------------------------------------------


class AssignmentSerializer(serializers.Serializer):
    """An item leased to you, with its responses in the order to show them."""

    id = serializers.IntegerField()
    status = TextField()
    kind = TextField(source="item.project.kind")
    item = serializers.IntegerField(source="item_id")
    external_id = TextField(source="item.external_id")
    prompt = PromptField(source="item.prompt")
    responses = serializers.SerializerMethodField(
        help_text="The item's responses in display order. For a pair, label the first shown as "
        "A: a swapped pair is stored with A and B exchanged back."
    )
    swapped = serializers.BooleanField(
        help_text="Pairwise: the item's second response is shown first."
    )
    order = serializers.ListField(child=TextField(), help_text="Response ids in display order.")
    expires_at = serializers.DateTimeField()

    @extend_schema_field(ResponseSerializer(many=True))
    def get_responses(self, assignment) -> list[dict]:
        from annotate.assignment import responses_in_display_order

        return [represent(ResponseSerializer, r) for r in responses_in_display_order(assignment)]


class AnnotatorProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField(help_text="Your labels in the project.")
    skipped = serializers.IntegerField(help_text="Items you skipped.")
    complete = serializers.IntegerField(help_text="Regular items with all their human labels.")
    total = serializers.IntegerField(help_text="Regular (not gold) items.")


class AssignmentSubmitSerializer(serializers.Serializer):
    label = serializers.DictField(
        validators=[storable_json],
        help_text="The label in the project kind's canonical shape, in display terms.",
    )
    time_spent_ms = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0, max_value=2**31 - 1
    )
    request_id = TextField(
        required=False,
        allow_blank=True,
        default="",
        max_length=100,
        help_text="Your id for this request, kept with the assignment.",
    )


class AssignmentSkipSerializer(serializers.Serializer):
    reason = TextField(max_length=500, help_text="Why you skip this item.")
