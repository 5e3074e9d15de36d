"""Build a dataset version's files: train/test JSONL + Parquet, README.md, the zip archive.

One path for every format, on SQLite and PostgreSQL, in or out of a transaction: the
exporter's query (ORM, the filters of selection.py) is read through Django's connection as
Arrow batches (read.py), the exporter turns each batch into output rows (exporters/), and
here the rows are filtered by agreement, counted, split by group (selection.py) and written
(write.py).

Determinism: rows come in item id order; JSONL keys are sorted; Parquet row groups have a fixed
size and no timestamps; the card holds no date; the zip has fixed names, order, dates and
permissions: the same data and filters give the same bytes, on either database. Streaming: a
batch at a time, whatever the export's size.
"""

from __future__ import annotations

import concurrent.futures
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from annotate.models import Project
from annotate.services import ServiceError
from config import runtime

from ..models import DATA_FILES
from .card import dataset_card
from .exporters import Exporter, get_exporter
from .exporters.base import count, passes_agreement
from .formats import ExportError
from .read import item_pages, read_batches
from .selection import (
    check_split_keys,
    clean_filters,
    clean_options,
    clean_split,
    in_test_splits,
    labeled_items_queryset,
    project_items,
)
from .services import Progress
from .write import Archive, SplitWriter, file_info


@dataclass
class BuildResult:
    train_rows: int = 0
    test_rows: int = 0
    stats: dict = field(default_factory=dict)
    card: str = ""
    files: dict = field(default_factory=dict)  # name -> {name, bytes, sha256}
    checksum: str = ""


def build_export(
    *,
    project: Project,
    fmt: str,
    filters: dict,
    split: dict,
    out_dir: Path,
    options: dict | None = None,
    archive_name: str = "dataset.zip",
    progress: Progress | None = None,
    chunk_size: int | None = None,
) -> BuildResult:
    """Write train/test JSONL + Parquet, README.md and the zip archive into out_dir (built in
    out_dir.partial, renamed when complete). chunk_size: items per page read, the exporter's
    page_items unless given."""
    filters, split, options = clean_filters(filters), clean_split(split), clean_options(options)
    runtime.arrow_allocator()
    items = labeled_items_queryset(project, filters)
    try:
        check_split_keys(items, split)
    except ServiceError as exc:
        raise ExportError(str(exc)) from None
    total = items.count()
    chat = items.filter(chat=True).exists()
    exporter = get_exporter(fmt)(
        config=project.config,
        chat=chat,
        seed=split["seed"],
        split_by=split["by"],
        metadata_fields=options["metadata_fields"],
    )
    exporter.prepare(project, filters)
    exporter.metadata.scan(items)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    archive = Archive(partial / archive_name, partial, [*DATA_FILES, "README.md"])
    writers = {
        "train": SplitWriter(partial, "train", exporter.schema(), archive),  # the first member
        "test": SplitWriter(partial, "test", exporter.schema()),
    }
    rows = _Rows(exporter, writers, filters, split)
    if progress:
        progress(0, total)
    done = False
    try:
        query, columns = exporter.query(project, filters)
        pages = item_pages(project_items(project, filters), chunk_size or exporter.page_items)
        with runtime.gc_paused():
            for batch in read_batches(query, columns, pages):
                rows.write(exporter.convert(batch))
                if progress:
                    progress(exporter.stats["items"], total)
            rows.write(exporter.finish())
        rows.flush()
        done = True
    finally:
        rows.flush(wait_only=True)
        for writer in writers.values():
            writer.close()
        if not done:
            archive.abandon()
    if progress:
        progress(exporter.stats["items"], total)
    return _finish(project, exporter, filters, split, rows, partial, out_dir, archive)


class _Rows:
    """Output rows past the agreement filter, counted and written to their split."""

    def __init__(self, exporter: Exporter, writers: dict, filters: dict, split: dict):
        self.exporter, self.writers, self.filters = exporter, writers, filters
        self.seed, self.fraction = split["seed"], split["test_fraction"]
        self.agreement_micros = self.unanimous = self.items = 0
        self.by_labels: Counter[int] = Counter()  # exported items by their number of labels
        self.lowest: float | None = None
        self.pool = concurrent.futures.ThreadPoolExecutor(1)  # writes one batch at a time
        self.pending: concurrent.futures.Future | None = None

    def write(self, table: pa.Table | None) -> None:
        if table is None:
            return
        stats, firsts = self.exporter.stats, table.column("_first")
        keep = passes_agreement(self.filters, table.column("_agreement"))
        left_out = pc.and_(firsts, pc.invert(keep))
        single = pc.is_null(table.column("_agreement"))
        for key, mask in (("single_label", single), ("below_min_agreement", pc.invert(single))):
            count(stats, f"left_out.{key}", pc.sum(pc.cast(pc.and_(left_out, mask), pa.int64())))
        kept = table.filter(keep)
        if not kept.num_rows:
            return
        self.exporter.count(kept)
        for entry in pc.value_counts(kept.column("label_sources")).to_pylist():
            count(stats, f"rows.label_sources.{entry['values']}", entry["counts"])
        self._agreements(kept.filter(kept.column("_first")))
        keys = kept.column("split_key").to_pylist()
        in_test = pa.array(in_test_splits(keys, seed=self.seed, fraction=self.fraction))
        firsts, tables = kept.column("_first"), {}
        for name, mask in (("test", in_test), ("train", pc.invert(in_test))):
            stats[f"items.{name}"] += pc.sum(pc.cast(pc.and_(firsts, mask), pa.int64())).as_py()
            tables[name] = kept.filter(mask)
        self.flush()
        self.pending = self.pool.submit(self._write, tables)

    def _write(self, tables: dict[str, pa.Table]) -> None:
        for name, table in tables.items():
            self.writers[name].write(table)

    def flush(self, wait_only: bool = False) -> None:
        """Waits for the batch being written (polars and Parquet write without the GIL: the
        next batch is made meanwhile); its error, if any, is raised here."""
        pending, self.pending = self.pending, None
        if pending is not None and wait_only:
            concurrent.futures.wait([pending])
        elif pending is not None:
            pending.result()
        if wait_only:
            self.pool.shutdown()

    def _agreements(self, items: pa.Table) -> None:
        """Sums for the card, of the exported items (their first rows): the number of labels,
        and the agreement of those with several (6 decimals, summed exactly in millionths)."""
        for entry in pc.value_counts(items.column("n_labels")).to_pylist():
            self.by_labels[entry["values"]] += entry["counts"]
        agreements = items.column("_agreement").drop_null()
        if not len(agreements):
            return
        self.items += len(agreements)
        scaled = pc.round(pc.multiply(agreements, 1_000_000.0))
        self.agreement_micros += int(pc.sum(scaled).as_py())
        self.unanimous += pc.sum(pc.cast(pc.greater_equal(agreements, 1.0), pa.int64())).as_py()
        lowest = pc.min(agreements).as_py()
        self.lowest = lowest if self.lowest is None else min(self.lowest, lowest)

    def summary(self) -> dict:
        """The card's stats of the exported items: how many have each number of labels, and
        the agreement of those with several (a single label has none)."""
        summary: dict = {}
        if self.by_labels:
            summary["items_by_labels"] = {str(n): self.by_labels[n] for n in sorted(self.by_labels)}
        if self.items:
            summary["agreement"] = {
                "mean": round(self.agreement_micros / self.items / 1_000_000, 6),
                "min": round(self.lowest, 6),
                "unanimous": self.unanimous,
                "items": self.items,
            }
        return summary


def _finish(project, exporter, filters, split, rows: _Rows, partial, out_dir, archive: Archive):
    writers = rows.writers
    result = BuildResult(train_rows=writers["train"].rows, test_rows=writers["test"].rows)
    stats = Counter({key: value for key, value in exporter.stats.items() if value})
    summary = {key: stats[key] for key in sorted(stats)}
    summary.update(rows_train=result.train_rows, rows_test=result.test_rows)
    summary.setdefault("items", 0)
    summary.update(rows.summary())
    result.stats = summary
    jsonl = {f"{name}.jsonl": writer.jsonl.info() for name, writer in writers.items()}
    result.files = {name: jsonl.get(name) or file_info(partial / name) for name in DATA_FILES}
    try:
        result.card = dataset_card(project, exporter, filters, split, result)
        (partial / "README.md").write_text(result.card, encoding="utf-8")
        result.files["README.md"] = file_info(partial / "README.md")
        archive.close()
    except BaseException:
        archive.abandon()
        raise
    result.files["archive"] = file_info(Path(archive.file.name))
    result.checksum = result.files["archive"]["sha256"]
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)
    return result
