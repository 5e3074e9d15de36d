"""The files of an export: one split's JSONL and Parquet written from Arrow tables, the zip
archive (stdlib zipfile, fixed names, order, dates and permissions), and file digests.

A batch's rows are written once per file, from the same Arrow table: JSONL by polars' writer
(keys sorted: the columns and struct fields reordered first), Parquet by pyarrow in row groups
of exactly ROW_GROUP_SIZE rows, so that the bytes do not depend on how the rows were batched."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_SIZE = 10_000
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "use_dictionary": True}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def sorted_keys(array: pa.Array) -> pa.Array:
    """The same values with every struct's fields in name order (JSON with sorted keys)."""
    kind = array.type
    if pa.types.is_struct(kind):
        names = sorted(f.name for f in kind)
        children = [sorted_keys(array.field(name)) for name in names]
        mask = array.is_null() if array.null_count else None
        return pa.StructArray.from_arrays(children, names=names, mask=mask)
    if pa.types.is_list(kind) and _has_struct(kind):
        mask = array.is_null() if array.null_count else None
        return pa.ListArray.from_arrays(array.offsets, sorted_keys(array.values), mask=mask)
    return array


def _has_struct(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind):
        return True
    return pa.types.is_list(kind) and _has_struct(kind.value_type)


class SplitWriter:
    """One split's JSONL and Parquet files, written as tables of rows arrive."""

    def __init__(self, folder: Path, name: str, schema: pa.Schema):
        self.schema = schema
        self.rows = 0
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.jsonl = open(folder / f"{name}.jsonl", "wb")  # noqa: SIM115 (closed by close())
        self.parquet = pq.ParquetWriter(folder / f"{name}.parquet", schema, **PARQUET_OPTIONS)
        self.json_names = sorted(schema.names)

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        table = table.select(self.schema.names).replace_schema_metadata(self.schema.metadata)
        self.rows += table.num_rows
        self._jsonl(table)
        self.pending.append(table)
        self.pending_rows += table.num_rows
        if self.pending_rows >= ROW_GROUP_SIZE:
            self._row_groups(final=False)

    def _jsonl(self, table: pa.Table) -> None:
        columns = {}
        for name in self.json_names:
            column = table.column(name)
            if _has_struct(column.type):
                column = pa.chunked_array([sorted_keys(chunk) for chunk in column.chunks])
            columns[name] = column
        pl.from_arrow(pa.table(columns)).write_ndjson(self.jsonl)

    def _row_groups(self, final: bool) -> None:
        table = pa.concat_tables(self.pending)
        whole = table.num_rows if final else table.num_rows - table.num_rows % ROW_GROUP_SIZE
        for start in range(0, whole, ROW_GROUP_SIZE):
            self.parquet.write_table(table.slice(start, ROW_GROUP_SIZE).combine_chunks())
        rest = table.slice(whole)
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        try:
            if self.pending:
                self._row_groups(final=True)
            self.parquet.close()
        finally:
            self.jsonl.close()


def file_info(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def write_archive(target: Path, folder: Path, names: list[str]) -> None:
    """A zip whose bytes depend only on the files: Parquet stored as it is (zstd already),
    the rest deflated."""
    with zipfile.ZipFile(target, "w", allowZip64=True) as archive:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.create_system = 3  # unix, whatever the platform
            info.external_attr = 0o644 << 16
            stored = name.endswith(".parquet")
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            info._compresslevel = None if stored else 1  # Python 3.11's name for it
            info.file_size = (folder / name).stat().st_size  # Zip64 decided up front
            with open(folder / name, "rb") as source, archive.open(info, "w") as member:
                shutil.copyfileobj(source, member, 1 << 20)
