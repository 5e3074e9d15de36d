"""The pairwise export's rows rendered from Arrow columns, whole batches at a time.

PostgreSQL sends each labeled item's label counts and, for an exported item, its plain strings
(pairwise_sql.Query.rows). Here Arrow's vectorised kernels and numpy turn a batch of them into
the card's counts, the JSONL lines in the row-by-row exporter's exact bytes (orjson with sorted
keys) and the Parquet columns. Per row the database only reads and sends; escaping, number
formatting, the names and the line's concatenation cost a few passes over the batch here
instead of ~30 expressions per row there (measured: the database's work per row fell by half).

JSON string tokens come from orjson itself: the strings that need escaping go through one
orjson.dumps of a list, cut at offsets computed from their lengths; the rest only get quotes.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .exporters.base import MESSAGE

MILLION = 1_000_000
# Bytes a character adds when orjson escapes it: \" \\ \b \t \n \f \r add one, the other
# control characters (\u00XX) five; nothing else is escaped (not DEL, not U+2028).
ESCAPE_EXTRA = np.zeros(256, np.uint8)
ESCAPE_EXTRA[:32] = 5
ESCAPE_EXTRA[list(b'"\\\b\t\n\f\r')] = 1


def json_pieces(strings: pa.Array) -> list:
    """Pieces of a line that give each string as orjson writes it (a JSON string token),
    followed by a comma: the strings between quotes when none needs escaping."""
    tokens = escaped_tokens(strings.cast(pa.string()))
    return ['"', strings, '",'] if tokens is None else [tokens]


def escaped_tokens(strings: pa.StringArray) -> pa.StringArray | None:
    """Each string's JSON token and a comma; None when no string needs escaping."""
    n = len(strings)
    data = strings.buffers()[2]
    if not n or data is None:
        return None
    offsets = np.frombuffer(strings.buffers()[1], np.int32)[strings.offset : strings.offset + n + 1]
    text = np.frombuffer(data, np.uint8)[offsets[0] : offsets[-1]]
    special = text < 32
    special |= text == ord('"')
    special |= text == ord("\\")
    hits = np.flatnonzero(special)
    if not hits.size:
        return None
    extra = ESCAPE_EXTRA[text[hits]]
    rows = np.searchsorted(offsets, hits + offsets[0], side="right") - 1
    flagged = np.unique(rows)
    added = np.bincount(rows, weights=extra, minlength=n).astype(np.int64)[flagged]
    # orjson.dumps([s1, ..., sk, ""]) is [t1,t2,...,tk,""]: token i and its comma start at
    # 1 + the lengths before it (bytes + escapes + two quotes + the comma).
    sizes = offsets[flagged + 1] - offsets[flagged] + added + 3
    starts = np.concatenate([[1], 1 + np.cumsum(sizes)])
    dumped = orjson.dumps([*strings.take(pa.array(flagged)).to_pylist(), ""])
    if len(dumped) != starts[-1] + 3:
        raise RuntimeError("orjson escaped the export's strings differently than expected")
    escaped = pa.Array.from_buffers(
        pa.string(),
        len(flagged),
        [None, pa.py_buffer(starts.astype(np.int32)), pa.py_buffer(dumped)],
    )
    mask = np.zeros(n, bool)
    mask[flagged] = True
    plain = pc.binary_join_element_wise('"', strings, '",', "")
    return pc.replace_with_mask(plain, pa.array(mask), escaped)


def joined(*pieces) -> pa.StringArray:
    """Pieces (arrays or strings) concatenated row by row."""
    return pc.binary_join_element_wise(*pieces, "")


def decimal_text(micros: np.ndarray) -> pa.StringArray:
    """Non-negative millionths as Python and orjson print the float micros / 10**6 (1.0, 0.5,
    0.666667), for values from 10**-4 on (below that they would print an exponent)."""
    values, index = np.unique(micros, return_inverse=True)  # a few distinct shares
    texts = [f"{v // MILLION}.{v % MILLION:06d}".rstrip("0") for v in values.tolist()]
    return pa.array([t + "0" if t.endswith(".") else t for t in texts]).take(pa.array(index))


def majority_micros(batch: pa.RecordBatch) -> np.ndarray:
    """The majority's share of each item's labels in millionths, rounded half up (as the
    query's MICROS)."""
    n, na, nb, nt = (batch.column(c).to_numpy() for c in ("n", "na", "nb", "nt"))
    return (np.maximum(np.maximum(na, nb), nt) * 2 * MILLION + n) // (2 * n)


def half_up_micros(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """round(total / count, 6) in millionths, halves up (count > 0)."""
    return (total * 2 * MILLION + count) // (2 * count)


class Names:
    """The labels' annotators or judges by id: JSON pieces and Parquet lists of one name."""

    def __init__(self, names: dict[int, str]):
        ids = sorted(names)
        self.ids = pa.array(ids, pa.int64())
        self.raw = pa.array([names[i] for i in ids], pa.string())
        self.json = pa.array([orjson.dumps([names[i]]).decode() for i in ids], pa.string())

    def render(self, first: pa.Array, several: pa.Array) -> tuple[pa.Array, pa.Array]:
        """(JSON arrays, lists) of rows whose labels have one name (its id in `first`), none
        (`first` null) or several (`several`: the names sorted, null otherwise)."""
        index = pc.index_in(first.cast(pa.int64()), value_set=self.ids)
        if index.null_count != first.null_count:
            raise RuntimeError("a label's annotator or judge is missing from the export's names")
        json = pc.fill_null(self.json.take(index), "[]")
        present = np.asarray(index.is_valid())
        offsets = np.concatenate([[0], np.cumsum(present)]).astype(np.int32)
        lists = pa.ListArray.from_arrays(pa.array(offsets), self.raw.take(index.drop_null()))
        if several.null_count == len(several):
            return json, lists
        many = several.is_valid()
        tokens = joined(*json_pieces(several.values))
        token_lists = pa.ListArray.from_arrays(several.offsets, tokens, mask=several.is_null())
        many_json = joined(
            "[", pc.utf8_slice_codeunits(pc.binary_join(token_lists, ""), 0, -1), "]"
        )
        return (
            pc.if_else(many, many_json, json),
            pc.if_else(many, several.cast(pa.list_(pa.string())), lists),
        )


SOURCES = ("human", "imported", "judge")
# Indexed by a bit per source present (human 1, imported 2, judge 4).
SOURCE_SETS = [[s for k, s in enumerate(SOURCES) if code >> k & 1] for code in range(8)]
SOURCES_JSON = pa.array([orjson.dumps(s).decode() for s in SOURCE_SETS], pa.string())
SOURCES_LIST = pa.array(SOURCE_SETS, pa.list_(pa.string()))


# Card counts summed from the query's columns: the key → the column.
SUMMED = {
    "labels": "n", "labels.A": "na", "labels.B": "nb", "labels.tie": "nt",
    "sources.human": "n_human", "sources.imported": "n_imported", "sources.judge": "n_judge",
}  # fmt: skip


class Renderer:
    """Turns the rows query's batches into counts, lines and Parquet tables."""

    def __init__(
        self, *, schema: pa.Schema, chat: bool, margin: bool, seed: int, threshold: int,
        names: dict[str, dict[int, str]], min_micros: int,
    ):  # fmt: skip
        self.schema, self.chat, self.margin = schema, chat, margin
        self.users, self.judges = Names(names["users"]), Names(names["judges"])
        self.prefix = f"{seed}:".encode()
        self.threshold = threshold  # pairwise_sql.test_threshold of the test fraction
        self.min_micros = min_micros

    def counts(self, batch: pa.RecordBatch, counts: Counter) -> tuple[np.ndarray, int | None]:
        """Adds the batch's card counts; returns the exported rows' mask and their lowest
        agreement in millionths (None without exported rows)."""
        na, nb, nt = (batch.column(c).to_numpy() for c in ("na", "nb", "nt"))
        majority = ((na > nb) & (na > nt)) | ((nb > na) & (nb > nt))
        tie = (nt > na) & (nt > nb)
        micros = majority_micros(batch)
        exported = majority & (micros >= self.min_micros)
        if not np.array_equal(exported, np.asarray(batch.column("external_id").is_valid())):
            raise RuntimeError("the database and the renderer disagree on the exported items")
        counts["items"] += batch.num_rows
        for key, column in SUMMED.items():
            counts[key] += int(batch.column(column).to_numpy().sum())
        counts["left_out.no_majority"] += int((~majority & ~tie).sum())
        counts["left_out.ties"] += int(tie.sum())
        counts["left_out.below_min_agreement"] += int((majority & ~exported).sum())
        counts["chosen.A"] += int((exported & (na > nb)).sum())
        counts["chosen.B"] += int((exported & (nb > na)).sum())
        shares = micros[exported]
        counts["agreement_micros"] += int(shares.sum())
        counts["unanimous"] += int((shares >= MILLION).sum())
        return exported, int(shares.min()) if shares.size else None

    def in_test(self, external_ids: pa.Array) -> np.ndarray:
        """datasets.in_test_split for each id: the hash's first 8 bytes below the threshold."""
        if self.threshold == 0 or self.threshold >= 2**64:
            return np.full(len(external_ids), self.threshold > 0)
        limit, prefix, sha256 = self.threshold.to_bytes(8, "big"), self.prefix, hashlib.sha256
        ids = external_ids.cast(pa.binary()).to_pylist()  # UTF-8 bytes, no str round trip
        return np.array([sha256(prefix + e).digest()[:8] < limit for e in ids], bool)

    def rows(self, batch: pa.RecordBatch) -> tuple[pa.Array, pa.Table]:
        """The exported rows' JSONL lines and Parquet table (batch: exported rows only)."""
        col = batch.column
        micros = majority_micros(batch)
        agreement = decimal_text(micros)
        annotators, annotator_lists = self.users.render(col("u1"), col("annotators"))
        judges, judge_lists = self.judges.render(col("j1"), col("judges"))
        code = (
            (col("n_human").to_numpy() > 0)
            + 2 * (col("n_imported").to_numpy() > 0)
            + 4 * (col("n_judge").to_numpy() > 0)
        )
        sources = SOURCES_JSON.take(pa.array(code))
        chosen, rejected = json_pieces(col("chosen")), json_pieces(col("rejected"))
        if self.chat:
            prompt = [col("prompt_json"), ","]
            chosen, rejected = (
                ['[{"content":', *pieces, '"role":"assistant"}],'] for pieces in (chosen, rejected)
            )
        else:
            prompt = json_pieces(col("prompt"))
        margin_piece, margin_value = [], None
        if self.margin:
            strength_sum = col("strength_sum").to_numpy(zero_copy_only=False)
            strength_count = col("strength_count").to_numpy(zero_copy_only=False)
            has = strength_count > 0
            margin_micros = np.zeros(batch.num_rows, np.int64)
            margin_micros[has] = half_up_micros(
                strength_sum[has].astype(np.int64), strength_count[has].astype(np.int64)
            )
            margin_text = pc.if_else(pa.array(~has), "null", decimal_text(margin_micros))
            margin_piece = ['"margin":', margin_text, ","]
            margin_value = pa.array(margin_micros / MILLION, pa.float64(), mask=~has)
        lines = joined(
            '{"agreement":', agreement, ',"annotators":', annotators, ',"chosen":', *chosen,
            '"chosen_id":', *json_pieces(col("chosen_id")),
            '"external_id":', *json_pieces(col("external_id")),
            '"judges":', judges, ",", *margin_piece,
            '"n_labels":', col("n").cast(pa.string()), ',"prompt":', *prompt,
            '"rejected":', *rejected, '"rejected_id":', *json_pieces(col("rejected_id")),
            '"sources":', sources, "}\n",
        )  # fmt: skip
        columns = {
            "chosen_id": col("chosen_id"),
            "rejected_id": col("rejected_id"),
            "margin": margin_value,
            "external_id": col("external_id"),
            "n_labels": col("n"),
            "agreement": pa.array(micros / MILLION, pa.float64()),
            "sources": SOURCES_LIST.take(pa.array(code)),
            "annotators": annotator_lists,
            "judges": judge_lists,
            **self._texts(batch),
        }
        table = pa.Table.from_arrays(
            [columns[f.name].cast(f.type) for f in self.schema], schema=self.schema
        )
        return lines, table

    def _texts(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        """prompt, chosen and rejected as Parquet columns: strings, or messages for chat."""
        if not self.chat:
            return {name: batch.column(name) for name in ("prompt", "chosen", "rejected")}
        n = batch.num_rows
        roles, contents = batch.column("prompt_roles"), batch.column("prompt_contents")
        texts = {
            "prompt": pa.ListArray.from_arrays(
                roles.offsets,
                pa.StructArray.from_arrays([roles.values, contents.values], fields=list(MESSAGE)),
            )
        }
        single = pa.array(range(n + 1), pa.int32())
        for name in ("chosen", "rejected"):
            texts[name] = pa.ListArray.from_arrays(
                single,
                pa.StructArray.from_arrays(
                    [pa.repeat("assistant", n), batch.column(name)], fields=list(MESSAGE)
                ),
            )
        return texts
