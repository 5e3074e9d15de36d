"""Pairwise → TRL's preference format: prompt, chosen, rejected (+ margin, provenance).

Text prompts give plain strings; when the export holds a chat prompt, every row is
conversational: prompt = messages, chosen/rejected = [{"role": "assistant", "content": ...}].
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from annotate.kinds.aggregate import majority_vote

from .base import Exporter, ItemRecord, LabelRecord, LabelSource, provenance


def pair_fields(exporter: Exporter) -> list[tuple[str, pa.DataType]]:
    return [
        ("prompt", exporter.prompt_type()),
        ("chosen", exporter.prompt_type()),
        ("rejected", exporter.prompt_type()),
        ("chosen_id", pa.string()),
        ("rejected_id", pa.string()),
    ]


def pair_row(exporter: Exporter, item: ItemRecord, chosen: dict, rejected: dict) -> dict[str, Any]:
    """The TRL columns of one preference pair; chosen and rejected are item responses."""

    def completion(response: dict):
        text = response["text"]
        return [{"role": "assistant", "content": text}] if exporter.chat else text

    return {
        "prompt": exporter.prompt(item),
        "chosen": completion(chosen),
        "rejected": completion(rejected),
        "chosen_id": chosen["id"],
        "rejected_id": rejected["id"],
    }


class PairwiseExporter(Exporter):
    format = "pairwise"
    kind = "pairwise"
    aggregation = (
        "Majority vote over the labels' choice (A, B or tie); `agreement` is the majority's "
        "share. Items whose majority is a tie, or with no majority (as many A as B), are left "
        "out and counted. `margin` is the mean strength (1-3) of the majority's labels; the "
        "column is there only when every exported row has one (labels without a strength, "
        "e.g. imported ones, would leave it null, which TRL's margin loss rejects)."
    )
    margin = True  # set by prepare(): whether every exported row has a margin

    def prepare(self, labels: LabelSource, min_agreement: float) -> None:
        # A null margin is rejected by TRL's margin loss: the column only when every row has one.
        self.margin = not labels.majority_without_strength(min_agreement)

    def fields(self):
        return pair_fields(self) + ([("margin", pa.float64())] if self.margin else [])

    def rows(self, item: ItemRecord, labels: list[LabelRecord]) -> list[dict[str, Any]]:
        # Fast path, the common case: one label per item.
        if len(labels) == 1:
            only = labels[0]
            choice, agreement = only.label.get("choice"), 1.0
            self.stats[f"labels.{choice}"] += 1
            common = {
                "external_id": item.external_id,
                "n_labels": 1,
                "agreement": 1.0,
                "sources": [only.source],
                "annotators": [only.annotator] if only.annotator else [],
                "judges": [only.judge] if only.judge else [],
            }
        else:
            self.stats.update(f"labels.{lb.label.get('choice')}" for lb in labels)
            choice, agreement = majority_choice(labels)
            common = provenance(item, labels, agreement)
        if choice is None:
            self.stats["left_out.no_majority"] += 1
            return []
        if choice == "tie":
            self.stats["left_out.ties"] += 1
            return []
        a, b = item.responses[0], item.responses[1]
        row = pair_row(self, item, a, b) if choice == "A" else pair_row(self, item, b, a)
        if self.margin:
            row["margin"] = mean_strength(labels, choice)
        row.update(common)
        return [row]

    def count(self, item: ItemRecord, rows: list[dict[str, Any]]) -> None:
        choice = "A" if rows[0]["chosen_id"] == item.responses[0]["id"] else "B"
        self.stats[f"chosen.{choice}"] += 1


def majority_choice(labels: list[LabelRecord]) -> tuple[str | None, float]:
    """The majority's choice (A, B or tie; None without a majority) and its share."""
    first = labels[0].label.get("choice")
    if all(lb.label.get("choice") == first for lb in labels):
        return first, 1.0
    return majority_vote([lb.label.get("choice") for lb in labels])


def mean_strength(labels: list[LabelRecord], choice: str) -> float | None:
    """The mean strength of the labels for `choice`; None when none of them has one."""
    strengths = [
        lb.label["strength"]
        for lb in labels
        if lb.label.get("choice") == choice and lb.label.get("strength") is not None
    ]
    return round(sum(strengths) / len(strengths), 6) if strengths else None
