"""A queryset's rows as Arrow record batches, read through Django's own connection (so in or
out of a transaction, on either database), a page of items at a time, in the queryset's order.

Pages are ranges of item ids (`key`): each page is one query, read to its end before its rows
are handed on, so that the connection is free between pages (progress reports, the pairwise
exporter's names). PostgreSQL sends `COPY (<the page's SQL>) TO STDOUT` as CSV, parsed into
Arrow in C++ (no Python object per value); SQLite's rows are fetched and turned into Arrow
column by column."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
from django.db import connection
from django.db.models import Count, Max, Min, QuerySet

BLOCK_BYTES = 4 << 20  # CSV bytes per Arrow batch on PostgreSQL
FETCH_ROWS = 10_000  # rows per Arrow batch on SQLite


def item_pages(items: QuerySet, size: int) -> list[tuple[int, int]]:
    """Ranges [low, high) of item ids holding about `size` of these items each (equal widths
    over the ids, from one count: no scan of every id)."""
    bounds = items.aggregate(low=Min("id"), high=Max("id"), n=Count("id"))
    if not bounds["n"]:
        return []
    low, high = bounds["low"], bounds["high"] + 1
    width = max(1, -(-size * (high - low) // bounds["n"]))
    return [(start, min(start + width, high)) for start in range(low, high, width)]


def read_batches(
    queryset: QuerySet, schema: pa.Schema, *, key: str, pages: list[tuple[int, int]]
) -> Iterator[pa.RecordBatch]:
    """The rows of a values_list() queryset, whose columns are `schema`'s, in batches, a page
    of `key` (an item id) at a time."""
    for low, high in pages:
        page = queryset.filter(**{f"{key}__gte": low, f"{key}__lt": high})
        sql, params = page.query.sql_with_params()
        if connection.vendor == "postgresql":
            batches = list(_copy_batches(sql, params, schema))
        else:
            batches = list(_fetched_batches(sql, params, schema))
        yield from batches


def _fetched_batches(sql, params, schema: pa.Schema):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH_ROWS):
            columns = zip(*rows, strict=True)
            arrays = [_array(column, f.type) for column, f in zip(columns, schema, strict=True)]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _array(values, kind: pa.DataType) -> pa.Array:
    if pa.types.is_boolean(kind):  # SQLite's booleans may come as 0 and 1
        return pa.array([None if v is None else bool(v) for v in values], kind)
    return pa.array(values, kind)


class _CopyStream(io.RawIOBase):
    """COPY's output blocks as a file for Arrow's CSV reader."""

    def __init__(self, blocks):
        self.blocks, self.rest = blocks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.rest:
            block = next(self.blocks, None)
            if block is None:
                return 0
            self.rest = memoryview(block)
        n = min(len(buffer), len(self.rest))
        buffer[:n], self.rest = self.rest[:n], self.rest[n:]
        return n


def _copy_batches(sql, params, schema: pa.Schema):
    read = pacsv.ReadOptions(column_names=schema.names, block_size=BLOCK_BYTES)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    # COPY's CSV: NULL is an empty unquoted field, an empty string is "".
    convert = pacsv.ConvertOptions(
        column_types=schema,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    copy_sql = f"COPY ({sql}) TO STDOUT (FORMAT csv)"
    with (
        connection.cursor() as cursor,
        cursor.connection.cursor() as raw,
        raw.copy(copy_sql, params) as copy,
    ):
        blocks = iter(copy)
        first = next(blocks, None)  # Arrow's reader refuses an empty input
        if first is None:
            return
        stream = _CopyStream(itertools.chain([first], blocks))
        for batch in pacsv.open_csv(stream, read, parse, convert):
            yield batch.select(schema.names).cast(schema)
