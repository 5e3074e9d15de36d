"""What an export selects: its filters and split, validated; the labels and items they pick,
as ORM filters that every export query reuses (both databases); the items that lack a split's
group key. The split rule itself is annotate/splits.py (training uses it too)."""

from __future__ import annotations

import datetime as dt
import re

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from annotate.models import Annotation, Item, Project
from annotate.selectors import metadata_field
from annotate.services import ServiceError
from annotate.splits import (  # noqa: F401 (the rule, re-exported for the export's modules)
    in_test_split,
    in_test_splits,
    metadata_key,
    metadata_path,
    prompt_key,
    split_hash,
)

SOURCES = {
    "human": [Annotation.Source.HUMAN],
    "judge": [Annotation.Source.JUDGE],
    "both": [Annotation.Source.HUMAN, Annotation.Source.JUDGE, Annotation.Source.IMPORTED],
    # People's labels (human, imported) where an item has any, else the judges': the final
    # labels of a routed project, where people label what the judges would get wrong.
    "people_first": [Annotation.Source.HUMAN, Annotation.Source.JUDGE, Annotation.Source.IMPORTED],
}
PEOPLE = [Annotation.Source.HUMAN, Annotation.Source.IMPORTED]
FILTER_DEFAULTS = {
    "source": "both",
    "min_agreement": 0.0,
    # An item labelled once has no agreement (n/a): kept by default, because most published
    # preference data has one label per item and nothing says that label is doubtful.
    "keep_single_label": True,
    "exclude_gold": False,
    "since": None,
    "until": None,
    "annotators": [],
}
# by: "prompt" (the prompt's content hash: every item of one prompt on one side) or
# "metadata.<field>" (a field of the items' metadata, e.g. metadata.question_id; a dotted path
# reaches into nested objects).
SPLIT_DEFAULTS = {"test_fraction": 0.1, "seed": 0, "by": "prompt"}
SPLIT_BY_PATTERN = re.compile(r"metadata(\.[^.\s]+)+")
# metadata_fields: top-level fields of the items' metadata flattened into columns
# `metadata.<field>` (the whole metadata is always a JSON column).
OPTION_DEFAULTS = {"metadata_fields": []}
MAX_METADATA_FIELDS = 100


def clean_filters(filters: dict | None) -> dict:
    """Filters with defaults filled in; ServiceError naming the filter at fault."""
    cleaned = _over_defaults(filters, FILTER_DEFAULTS, "filter", "filters")
    if cleaned["source"] not in SOURCES:
        raise ServiceError(f"Source must be one of {', '.join(SOURCES)}.", "filters.source")
    cleaned["min_agreement"] = _number(cleaned["min_agreement"], "filters.min_agreement", 0, 1)
    for key in ("exclude_gold", "keep_single_label"):
        if not isinstance(cleaned[key], bool):
            raise ServiceError("Expected true or false.", f"filters.{key}")
    for key in ("since", "until"):
        cleaned[key] = _date(cleaned[key], f"filters.{key}")
    if cleaned["since"] and cleaned["until"] and cleaned["since"] > cleaned["until"]:
        raise ServiceError("`since` is after `until`.", "filters.until")
    annotators = cleaned["annotators"]
    if isinstance(annotators, str):
        annotators = [a for a in annotators.split(",")]
    if not isinstance(annotators, list) or not all(isinstance(a, str) for a in annotators):
        raise ServiceError("Expected a list of usernames or judge names.", "filters.annotators")
    cleaned["annotators"] = sorted({a.strip() for a in annotators if a.strip()})
    return cleaned


def clean_split(split: dict | None) -> dict:
    cleaned = _over_defaults(split, SPLIT_DEFAULTS, "split option", "split")
    fraction = _number(cleaned["test_fraction"], "split.test_fraction", 0, 1)
    if fraction >= 1:
        raise ServiceError("The test fraction must be below 1.", "split.test_fraction")
    seed = cleaned["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ServiceError("The seed must be a whole number from 0 to 2^31-1.", "split.seed")
    by = cleaned["by"].strip() if isinstance(cleaned["by"], str) else cleaned["by"]
    if by != "prompt" and not (isinstance(by, str) and SPLIT_BY_PATTERN.fullmatch(by)):
        raise ServiceError(
            'Split by "prompt" or by a metadata field, e.g. "metadata.question_id".', "split.by"
        )
    return {"test_fraction": fraction, "seed": seed, "by": by}


def clean_options(options: dict | None) -> dict:
    """Output options with defaults filled in; ServiceError naming the option at fault."""
    cleaned = _over_defaults(options, OPTION_DEFAULTS, "option", "options")
    fields = cleaned["metadata_fields"]
    if isinstance(fields, str):
        fields = fields.split(",")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise ServiceError("Expected a list of metadata field names.", "options.metadata_fields")
    names = []
    for name in (f.strip() for f in fields if f.strip()):
        if name.startswith("metadata."):
            name = name.removeprefix("metadata.")
        if not name or "." in name or any(c.isspace() for c in name):
            raise ServiceError(
                f"{name!r} is not a top-level metadata field name.", "options.metadata_fields"
            )
        if name not in names:
            names.append(name)
    if len(names) > MAX_METADATA_FIELDS:
        raise ServiceError(
            f"At most {MAX_METADATA_FIELDS} metadata fields.", "options.metadata_fields"
        )
    return {"metadata_fields": names}


def _over_defaults(given: dict | None, defaults: dict, what: str, field: str) -> dict:
    """`given` over `defaults` (a None keeps the default); ServiceError naming an unknown key."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ServiceError(f"Unknown {what} {unknown[0]!r}.", f"{field}.{unknown[0]}")
    return {**defaults, **{k: v for k, v in given.items() if v is not None}}


def _number(value, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ServiceError("Expected a number.", field)
    if not low <= value <= high:
        raise ServiceError(f"Must be from {low:g} to {high:g}.", field)
    return float(value)


def _date(value, field: str) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise ServiceError("Expected a date as YYYY-MM-DD.", field) from None


# The labels and items an export reads ------------------------------------------------------


def label_q(filters: dict, prefix: str = "") -> Q:
    """The label filters as one Q on Annotation, or on a relation to it (prefix
    "annotations__" from Item)."""
    p = prefix
    q = Q(**{f"{p}source__in": SOURCES[filters["source"]]})
    if filters["source"] == "people_first":
        # The label's item: the outer Annotation's, or the Item itself (prefix "annotations__").
        item = OuterRef(p.removesuffix("annotations__") + "pk" if p else "item_id")
        people = Exists(Annotation.objects.filter(item=item, source__in=PEOPLE))
        q &= Q(**{f"{p}source__in": PEOPLE}) | ~people
    if filters["since"]:
        q &= Q(**{f"{p}created_at__gte": _day_start(filters["since"])})
    if filters["until"]:
        until = dt.date.fromisoformat(filters["until"]) + dt.timedelta(days=1)
        q &= Q(**{f"{p}created_at__lt": _day_start(until.isoformat())})
    if filters["annotators"]:
        names = filters["annotators"]
        q &= Q(**{f"{p}annotator__username__in": names}) | Q(**{f"{p}judge__name__in": names})
    return q


def _day_start(day: str) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(dt.date.fromisoformat(day), dt.time()))


def item_q(project: Project, filters: dict, prefix: str = "") -> Q:
    """The item filters as one Q on Item, or on a relation to it (prefix "item__")."""
    q = Q(**{f"{prefix}project": project})
    if filters["exclude_gold"]:
        q &= Q(**{f"{prefix}gold_label__isnull": True})
    return q


def project_items(project: Project, filters: dict) -> QuerySet[Item]:
    """The project's items the filters allow (labels not looked at)."""
    return Item.objects.filter(item_q(project, filters))


def labels_of(project: Project, filters: dict) -> QuerySet[Annotation]:
    """The filtered labels of the project's items that the filters allow."""
    return Annotation.objects.filter(item_q(project, filters, "item__"), label_q(filters))


def label_queryset(filters: dict) -> QuerySet[Annotation]:
    """Labels that pass the filters (any project: callers restrict by item)."""
    return Annotation.objects.filter(label_q(filters))


def labeled_items_queryset(project: Project, filters: dict) -> QuerySet[Item]:
    """The project's items with at least one label that passes the filters."""
    labels = label_queryset(filters).filter(item=OuterRef("pk"))
    return project_items(project, filters).filter(Exists(labels))


# The split (its rule: annotate/splits.py) ------------------------------------------------------


def items_without_split_key(items: QuerySet[Item], split: dict) -> tuple[int, list[str]]:
    """How many of `items` have no value for the split's metadata field, and the first few
    external ids (nothing for a split by prompt: every item has one)."""
    if split["by"] == "prompt":
        return 0, []
    lacking = items.alias(split_value=metadata_field(metadata_path(split["by"]))).filter(
        Q(split_value__isnull=True) | Q(split_value=None)
    )
    return lacking.count(), list(lacking.order_by("id").values_list("external_id", flat=True)[:3])


def check_split_keys(items: QuerySet[Item], split: dict) -> None:
    """ServiceError (field split.by) when an item to export has no group key."""
    n, examples = items_without_split_key(items, split)
    if n:
        raise ServiceError(
            f"{n} item{'s' if n > 1 else ''} to export ha{'ve' if n > 1 else 's'} no "
            f"{split['by']} (e.g. {', '.join(examples)}): give every item that field, or split "
            'by "prompt".',
            "split.by",
        )
