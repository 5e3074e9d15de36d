"""Query-string filters of the list endpoints: a serializer validates them (400 with the
parameter's name on bad input), a function applies them to the queryset."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import QueryDict
from rest_framework import serializers
from rest_framework.fields import empty

from annotate.models import Annotation

from .fields import TextField

MAX_COUNT = 1_000_000


class QuerySerializer(serializers.Serializer):
    """Validates a query string as the schema states it: an empty value (`?source=`) is a
    value, refused where the parameter's type refuses it; DRF reads a QueryDict as an HTML
    form, where an empty field counts as absent."""

    def __init__(self, *args, data=empty, **kwargs):
        if isinstance(data, QueryDict):
            data = data.dict()
        super().__init__(*args, data=data, **kwargs)


class CreatedRangeSerializer(QuerySerializer):
    created_after = serializers.DateTimeField(
        required=False, help_text="ISO 8601; rows created at or after this time"
    )
    created_before = serializers.DateTimeField(
        required=False, help_text="ISO 8601; rows created before this time"
    )

    def validate(self, data):
        after, before = data.get("created_after"), data.get("created_before")
        if after and before and after > before:
            raise serializers.ValidationError(
                {"created_before": ["Must not be earlier than created_after."]}
            )
        return data


class ItemFilterSerializer(CreatedRangeSerializer):
    external_id = TextField(required=False, max_length=255)
    has_labels = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="has any label, of any source"
    )
    min_human_labels = serializers.IntegerField(required=False, min_value=0, max_value=MAX_COUNT)
    max_human_labels = serializers.IntegerField(required=False, min_value=0, max_value=MAX_COUNT)

    def validate(self, data):
        data = super().validate(data)
        low, high = data.get("min_human_labels"), data.get("max_human_labels")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError(
                {"max_human_labels": ["Must not be less than min_human_labels."]}
            )
        return data


class AnnotationFilterSerializer(CreatedRangeSerializer):
    source = serializers.ChoiceField(choices=Annotation.Source.values, required=False)
    annotator = TextField(
        required=False, max_length=150, help_text="username of the human annotator"
    )
    judge = TextField(required=False, max_length=100, help_text="judge name")
    item = TextField(required=False, max_length=255, help_text="item external_id")


def _created(queryset: QuerySet, data: dict) -> QuerySet:
    if "created_after" in data:
        queryset = queryset.filter(created_at__gte=data["created_after"])
    if "created_before" in data:
        queryset = queryset.filter(created_at__lt=data["created_before"])
    return queryset


def filter_items(queryset: QuerySet, data: dict) -> QuerySet:
    """Apply validated ItemFilterSerializer data to a queryset from selectors.items_for_project."""
    queryset = _created(queryset, data)
    if "external_id" in data:
        queryset = queryset.filter(external_id=data["external_id"])
    if data.get("has_labels") is True:
        queryset = queryset.filter(labels__gt=0)
    elif data.get("has_labels") is False:
        queryset = queryset.filter(labels=0)
    if "min_human_labels" in data:
        queryset = queryset.filter(human_labels__gte=data["min_human_labels"])
    if "max_human_labels" in data:
        queryset = queryset.filter(human_labels__lte=data["max_human_labels"])
    return queryset


def filter_annotations(queryset: QuerySet, data: dict) -> QuerySet:
    queryset = _created(queryset, data)
    if "source" in data:
        queryset = queryset.filter(source=data["source"])
    if "annotator" in data:
        queryset = queryset.filter(annotator__username=data["annotator"])
    if "judge" in data:
        queryset = queryset.filter(judge__name=data["judge"])
    if "item" in data:
        queryset = queryset.filter(item__external_id=data["item"])
    return queryset
