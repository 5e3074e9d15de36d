"""Spans → one row per (prompt, response) with its error spans and corrections, in the style
of Fine-Grained RLHF's feedback data."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from annotate.kinds.aggregate import majority_spans

from .base import ItemRows, Items, LabelsExporter, count, split_lists

SPAN = pa.struct(
    [
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("label", pa.string()),
        ("category", pa.string()),
        ("text", pa.string()),
        ("correction", pa.string()),
    ]
)


class SpansExporter(LabelsExporter):
    format = "spans"
    kind = "spans"
    aggregation = (
        "Character-level majority per error type: a character belongs to a span of type L when "
        "more than half of the item's labels mark it with L; runs of such characters are the "
        "spans (a span only one of two labels marks is dropped). A span's `correction` is the "
        "most common correction of labeled spans with exactly its offsets and type, else null. "
        "`corrections` lists every distinct corrected whole response, `missing` every distinct "
        "missing-information note. `agreement` is per response: over the characters any label "
        "marked, length-weighted, the share of labels that agree with the majority."
    )

    def fields(self):
        return [
            ("prompt", self.prompt_type()),
            ("response", pa.string()),
            ("response_id", pa.string()),
            ("model", pa.string()),
            ("spans", pa.list_(SPAN)),
            ("corrections", pa.list_(pa.string())),
            ("missing", pa.list_(pa.string())),
        ]

    def item_rows(self, items: Items) -> ItemRows:
        categories = {t["name"]: t["category"] for t in self.config.get("taxonomy", [])}
        texts = split_lists(items.response_texts.to_pylist(), items.response_offsets.to_pylist())
        spans, span_counts, corrections, missing = [], [], [], []
        agreements, item_agreements = [], []
        unmarked: dict[int, tuple] = {}  # majority_spans of n labels marking nothing
        for ids, responses, labels in zip(items.ids(), texts, items.labels, strict=True):
            n = len(labels)
            item_missing = _distinct(_note_text(label.get("missing")) for label in labels)
            marked = [label.get("spans") or [] for label in labels]
            corrected = [label.get("corrected") or {} for label in labels]
            first = len(agreements)
            for rid, text in zip(ids, responses, strict=True):
                if any(marked):
                    per_label = [[s for s in spans if s.get("response") == rid] for spans in marked]
                    kept, agreement = majority_spans(per_label, n)
                else:
                    per_label = None
                    if n not in unmarked:
                        unmarked[n] = majority_spans([[] for _ in labels], n)
                    kept, agreement = unmarked[n]
                for start, end, name in kept:
                    correction = _correction(per_label, start, end, name)
                    spans.append(
                        (start, end, name, categories.get(name, name), text[start:end], correction)
                    )
                span_counts.append(len(kept))
                corrections.append(_distinct(by_response.get(rid) for by_response in corrected))
                missing.append(item_missing)
                agreements.append(agreement)
            item_agreements.append(agreements[first] if ids else None)  # its first row's
        columns = {
            "response": items.response_texts,
            "response_id": items.response_ids,
            "model": items.models,
            "spans": _spans(spans, span_counts),
            "corrections": pa.array(corrections, pa.list_(pa.string())),
            "missing": pa.array(missing, pa.list_(pa.string())),
        }
        item = pc.list_parent_indices(items.per_response(items.response_ids))
        return ItemRows(columns, pc.cast(item, pa.int64()), agreements, item_agreements)

    def count(self, kept: pa.Table) -> None:
        labels = pc.struct_field(pc.list_flatten(kept.column("spans")), "label")
        for entry in pc.value_counts(labels).to_pylist():
            count(self.stats, f"spans.{entry['values']}", entry["counts"])
        count(self.stats, "responses", kept.num_rows)


def _spans(spans: list[tuple], counts: list[int]) -> pa.Array:
    """One list of SPAN per response, from the spans (tuples of SPAN's fields) in order."""
    columns = list(zip(*spans, strict=True)) or [[] for _ in SPAN]
    values = pa.StructArray.from_arrays(
        [pa.array(column, f.type) for column, f in zip(columns, SPAN, strict=True)],
        fields=list(SPAN),
    )
    offsets = pa.array([0, *itertools.accumulate(counts)], pa.int32())
    return pa.ListArray.from_arrays(offsets, values)


def _correction(per_label: list[list[dict]], start: int, end: int, name: str) -> str | None:
    found = Counter(
        s["correction"]
        for spans in per_label
        for s in spans
        if (s["start"], s["end"], s["label"]) == (start, end, name) and s.get("correction")
    ).most_common(1)
    return found[0][0] if found else None


def _note_text(note: Any) -> Any:
    # A structured note (an object or list, as the source gave it) goes out as its JSON text:
    # the column stays a list of strings, and json.loads gives the note back unchanged.
    return json.dumps(note, ensure_ascii=False) if isinstance(note, dict | list) and note else note


def _distinct(values) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return seen
