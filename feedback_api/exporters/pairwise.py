"""Pairwise → TRL's preference format: prompt, chosen, rejected (+ margin, provenance).

Text prompts give plain strings; when the export holds a chat prompt, every row is
conversational: prompt = messages, chosen/rejected = [{"role": "assistant", "content": ...}].
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .aggregate import majority_vote
from .base import Exporter, ItemRecord, LabelRecord, provenance


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
        "out and counted. `margin` is the mean strength (1-3) of the majority's labels, null "
        "when none of them has a strength (e.g. imported labels)."
    )

    def fields(self):
        return pair_fields(self) + [("margin", pa.float64())]

    def rows(self, item: ItemRecord, labels: list[LabelRecord]) -> list[dict[str, Any]]:
        choices = [lb.label.get("choice") for lb in labels]
        self.stats.update(f"labels.{c}" for c in choices)
        choice, agreement = majority_vote(choices)
        if choice is None:
            self.stats["left_out.no_majority"] += 1
            return []
        if choice == "tie":
            self.stats["left_out.ties"] += 1
            return []
        a, b = item.responses[0], item.responses[1]
        chosen, rejected = (a, b) if choice == "A" else (b, a)
        strengths = [
            lb.label["strength"]
            for lb in labels
            if lb.label.get("choice") == choice and lb.label.get("strength") is not None
        ]
        margin = round(sum(strengths) / len(strengths), 6) if strengths else None
        self.stats[f"chosen.{choice}"] += 1
        return [
            {
                **pair_row(self, item, chosen, rejected),
                "margin": margin,
                **provenance(item, labels, agreement),
            }
        ]
