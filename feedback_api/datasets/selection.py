"""What an export selects: its filters and split, validated; the labels and items they pick,
as ORM filters that every export query reuses (both databases); the split hash."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from annotate.models import Annotation, Item, Project
from annotate.services import ServiceError

SOURCES = {
    "human": [Annotation.Source.HUMAN],
    "judge": [Annotation.Source.JUDGE],
    "both": [Annotation.Source.HUMAN, Annotation.Source.JUDGE, Annotation.Source.IMPORTED],
}
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
SPLIT_DEFAULTS = {"test_fraction": 0.1, "seed": 0}


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
    return {"test_fraction": fraction, "seed": seed}


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


# The split ----------------------------------------------------------------------------------


def split_digests(seed: int, external_ids: list[str]) -> list[bytes]:
    """sha256("<seed>:<external_id>") of each item: the split's hash (its first 8 bytes, big
    endian, as a fraction of 2^64), also what ratings-pairs picks its rejected response with."""
    sha256, prefix = hashlib.sha256, f"{seed}:"
    return [sha256((prefix + e).encode()).digest() for e in external_ids]


def split_hash(seed: int, external_id: str) -> int:
    return int.from_bytes(split_digests(seed, [external_id])[0][:8], "big")


@functools.lru_cache
def _threshold(fraction: float) -> bytes:
    """The smallest 64-bit x with x / 2^64 >= fraction, as 8 bytes: a digest sorts below them
    exactly when its first 8 bytes, as a fraction of 2^64, are below `fraction`."""
    low, high = 0, 2**64
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if mid / 2**64 < fraction else (low, mid)
    return low.to_bytes(8, "big") if low < 2**64 else b"\xff" * 9


def in_test_splits(external_ids: list[str], *, seed: int, fraction: float) -> list[bool]:
    """Whether each item is in the test split: its hash as a fraction of 2^64 below `fraction`."""
    threshold = _threshold(fraction)
    return [digest < threshold for digest in split_digests(seed, external_ids)]


def in_test_split(external_id: str, *, seed: int, fraction: float) -> bool:
    return in_test_splits([external_id], seed=seed, fraction=fraction)[0]
