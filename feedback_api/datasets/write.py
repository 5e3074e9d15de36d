"""The files of an export: one split's JSONL and Parquet written from Arrow tables, the zip
archive (stdlib zipfile, fixed names, order, dates and permissions), and file digests.

A batch's rows are written once per file, from the same Arrow table: JSONL by polars' writer
(keys sorted: the columns and struct fields reordered first), Parquet by pyarrow in row groups
of exactly ROW_GROUP_SIZE rows, so that the bytes do not depend on how the rows were batched.

The archive's first member, train.jsonl (most of an export's bytes), is deflated as its rows
are written, on the writer thread while the next batch is made, and the JSONL files are hashed
on the way: deflating it after the export was as long as reading the rows (numbers in
bench/README.md, "Export")."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path
from typing import IO

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


class HashedFile:
    """A file written front to back, hashed on the way; its bytes also go to `copy` (a zip
    member) when given."""

    def __init__(self, path: Path, copy: IO[bytes] | None = None):
        self.file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.copy = copy
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.file.write(data)
        self.digest.update(data)
        if self.copy is not None:
            self.copy.write(data)
        self.size += len(data)
        return len(data)

    def info(self) -> dict:
        """file_info() of the file, as written."""
        return {"name": Path(self.file.name).name, "bytes": self.size,
                "sha256": self.digest.hexdigest()}  # fmt: skip

    def close(self) -> None:
        try:
            if self.copy is not None:
                self.copy.close()
        finally:
            self.file.close()


class SplitWriter:
    """One split's JSONL and Parquet files, written as tables of rows arrive; the JSONL's
    bytes also go to `archive` when given (its member of that name)."""

    def __init__(self, folder: Path, name: str, schema: pa.Schema, archive: Archive | None = None):
        self.schema = schema
        self.rows = 0
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        jsonl = f"{name}.jsonl"
        self.jsonl = HashedFile(folder / jsonl, archive.stream(jsonl) if archive else None)
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


class Archive:
    """A zip whose bytes depend only on the files, in the order of `names`: Parquet stored as
    it is (zstd already), the rest deflated. Its first member may be streamed (stream()) while
    that file is written; close() adds the others from `folder`."""

    def __init__(self, target: Path, folder: Path, names: list[str]):
        self.folder, self.names = folder, list(names)
        self.file = open(target, "w+b")  # noqa: SIM115 (closed by close() or abandon())
        self.zip = zipfile.ZipFile(self.file, "w", allowZip64=True)
        self.added = 0

    def stream(self, name: str) -> IO[bytes]:
        """The member `name` (the next in order) to write into; its size is not known yet, so
        it always carries the Zip64 fields."""
        if name != self.names[self.added]:
            raise ValueError(f"{name} is not the archive's next member")
        self.added += 1
        return self.zip.open(_member(name), "w", force_zip64=True)

    def close(self) -> None:
        """Adds the members not streamed, from their files (complete by now)."""
        with self.file, self.zip:
            for name in self.names[self.added :]:
                info = _member(name)
                info.file_size = (self.folder / name).stat().st_size  # Zip64 decided up front
                with open(self.folder / name, "rb") as source, self.zip.open(info, "w") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            self.added = len(self.names)

    def abandon(self) -> None:
        """Closes the archive after a failed export, with what it holds so far."""
        try:
            self.zip.close()
        except ValueError:  # a member still open for writing: nothing more to write
            self.zip.fp = None  # (else ZipFile.__del__ tries again, on the closed file)
        finally:
            self.file.close()


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.create_system = 3  # unix, whatever the platform
    info.external_attr = 0o644 << 16
    stored = name.endswith(".parquet")
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    info._compresslevel = None if stored else 1  # Python 3.11's name for it
    return info
