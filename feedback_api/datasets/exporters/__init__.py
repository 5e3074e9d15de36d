"""Dataset exporters: base.py + one module per annotation kind (see DESIGN.md, export formats).
Imported only by an export (pyarrow); the format names are in ..formats."""

from ..formats import FORMATS, ExportError, check_format
from .base import Exporter
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
assert {name: cls.kind for name, cls in EXPORTERS.items()} == FORMATS


def get_exporter(fmt: str) -> type[Exporter]:
    return EXPORTERS[check_format(fmt)]


__all__ = ["EXPORTERS", "ExportError", "Exporter", "get_exporter"]
