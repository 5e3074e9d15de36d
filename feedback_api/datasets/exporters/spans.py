"""Spans → one row per (prompt, response) with its error spans and corrections, in the style
of Fine-Grained RLHF's feedback data."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from annotate.kinds.aggregate import majority_spans

from .base import ItemRecord, LabelRecord, LabelsExporter, count, provenance

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

    def rows(self, item: ItemRecord, labels: list[LabelRecord]) -> list[dict[str, Any]]:
        categories = {t["name"]: t["category"] for t in self.config.get("taxonomy", [])}
        missing = _distinct(_note_text(lb.label.get("missing")) for lb in labels)
        rows = []
        for response in item.responses:
            rid, text = response["id"], response["text"]
            per_label = [
                [s for s in lb.label.get("spans", []) if s.get("response") == rid] for lb in labels
            ]
            kept, agreement = majority_spans(per_label, len(labels))
            spans = [
                {
                    "start": start,
                    "end": end,
                    "label": name,
                    "category": categories.get(name, name),
                    "text": text[start:end],
                    "correction": _correction(per_label, start, end, name),
                }
                for start, end, name in kept
            ]
            rows.append(
                {
                    "prompt": self.prompt(item),
                    "response": text,
                    "response_id": rid,
                    "model": response.get("model") or "",
                    "spans": spans,
                    "corrections": _distinct(
                        lb.label.get("corrected", {}).get(rid) for lb in labels
                    ),
                    "missing": missing,
                    **provenance(item, labels, agreement),
                }
            )
        return rows

    def count(self, kept: pa.Table) -> None:
        labels = pc.struct_field(pc.list_flatten(kept.column("spans")), "label")
        for entry in pc.value_counts(labels).to_pylist():
            count(self.stats, f"spans.{entry['values']}", entry["counts"])
        count(self.stats, "responses", kept.num_rows)


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
