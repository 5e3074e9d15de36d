"""Dataset exporters: base.py + one module per annotation kind (see DESIGN.md, export formats)."""

from .base import Exporter, ExportError, ItemRecord, LabelRecord
from .listwise import ListwiseExporter, ListwisePairsExporter
from .pairwise import PairwiseExporter
from .ratings import RatingsExporter, RatingsPairsExporter
from .spans import SpansExporter

EXPORTERS: dict[str, type[Exporter]] = {
    cls.format: cls
    for cls in (
        PairwiseExporter,
        ListwiseExporter,
        ListwisePairsExporter,
        SpansExporter,
        RatingsExporter,
        RatingsPairsExporter,
    )
}


def formats_for_kind(kind: str) -> list[str]:
    return [name for name, cls in EXPORTERS.items() if cls.kind == kind]


def get_exporter(fmt: str) -> type[Exporter]:
    try:
        return EXPORTERS[fmt]
    except KeyError:
        raise ExportError(f"unknown format {fmt!r} (one of {', '.join(EXPORTERS)})") from None


__all__ = [
    "EXPORTERS",
    "ExportError",
    "Exporter",
    "ItemRecord",
    "LabelRecord",
    "formats_for_kind",
    "get_exporter",
]
