"""The export formats by name, the project kind each reads, and the export's error type.

Light on purpose: views and serializers list the formats without importing the exporters
(pyarrow, polars)."""

from __future__ import annotations

FORMATS: dict[str, str] = {  # format -> the project kind whose labels it reads
    "pairwise": "pairwise",
    "listwise": "listwise",
    "listwise-pairs": "listwise",
    "spans": "spans",
    "ratings": "ratings",
    "ratings-pairs": "ratings",
}


class ExportError(Exception):
    """An export that cannot be built; `permanent` says whether a retry could help."""

    def __init__(self, message: str, *, permanent: bool = True):
        super().__init__(message)
        self.permanent = permanent


def formats_for_kind(kind: str) -> list[str]:
    return [name for name, of_kind in FORMATS.items() if of_kind == kind]


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    return fmt
