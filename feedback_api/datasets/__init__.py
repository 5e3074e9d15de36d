"""Dataset versions: validation, services and selectors that views call (light: no Arrow), and
the export itself (build.py, card.py, exporters/), imported only when a build runs.

One export path per format, the same on SQLite and PostgreSQL, in or out of a transaction:
see build.py."""

from __future__ import annotations

from .formats import FORMATS, ExportError, formats_for_kind
from .selection import (
    FILTER_DEFAULTS,
    OPTION_DEFAULTS,
    SOURCES,
    SPLIT_DEFAULTS,
    clean_filters,
    clean_options,
    clean_split,
    in_test_split,
    label_queryset,
    labeled_items_queryset,
)
from .services import (
    dataset_version_build,
    dataset_version_create,
    dataset_versions_for,
)


def build_export(**kwargs):
    """build.build_export (see there), imported on first use: it loads pyarrow and polars."""
    from .build import build_export as build

    return build(**kwargs)


__all__ = [
    "FILTER_DEFAULTS",
    "FORMATS",
    "OPTION_DEFAULTS",
    "SOURCES",
    "SPLIT_DEFAULTS",
    "ExportError",
    "build_export",
    "clean_filters",
    "clean_options",
    "clean_split",
    "dataset_version_build",
    "dataset_version_create",
    "dataset_versions_for",
    "formats_for_kind",
    "in_test_split",
    "label_queryset",
    "labeled_items_queryset",
]
