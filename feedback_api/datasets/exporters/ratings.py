"""Ratings → UltraFeedback-like rows (every response's mean aspect scores and rationales), and
the binarised pairwise view ("ratings-pairs"): the best response by mean score against a worse
one, picked deterministically from the seed and the item's external_id."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from annotate.kinds.aggregate import mean_ratings

from ..selection import split_hash
from .base import (
    ItemRecord,
    LabelRecord,
    LabelsExporter,
    count,
    pair_fields,
    pair_row,
    provenance,
)

AGGREGATION = (
    "Mean score per response and aspect over the labels; `mean_score` is the mean of a "
    "response's aspect means. `agreement` = 1 - mean absolute deviation from those means / "
    "the scale's width."
)


class RatingsExporter(LabelsExporter):
    format = "ratings"
    kind = "ratings"
    aggregation = AGGREGATION

    @property
    def aspects(self) -> list[str]:
        return [a["name"] for a in self.config["aspects"]]

    def fields(self):
        completion = pa.struct(
            [
                ("id", pa.string()),
                ("model", pa.string()),
                ("response", pa.string()),
                ("ratings", pa.struct([(name, pa.float64()) for name in self.aspects])),
                ("mean_score", pa.float64()),
                ("rationales", pa.list_(pa.string())),
            ]
        )
        return [("prompt", self.prompt_type()), ("completions", pa.list_(completion))]

    def completions(self, item: ItemRecord, labels: list[LabelRecord]) -> tuple[list, float]:
        scale = self.config["scale"]
        ids = [r["id"] for r in item.responses]
        means, agreement = mean_ratings(
            ids, self.aspects, [lb.label for lb in labels], scale["min"], scale["max"]
        )
        completions = []
        for response in item.responses:
            scores = means[response["id"]]
            rated = [lb.label.get("responses", {}).get(response["id"], {}) for lb in labels]
            completions.append(
                {
                    "id": response["id"],
                    "model": response.get("model") or "",
                    "response": response["text"],
                    "ratings": {a: _round(scores.get(a)) for a in self.aspects},
                    "mean_score": _round(sum(scores.values()) / len(scores) if scores else None),
                    "rationales": [r["rationale"] for r in rated if r.get("rationale")],
                }
            )
        return completions, agreement

    def rows(self, item: ItemRecord, labels: list[LabelRecord]) -> list[dict[str, Any]]:
        completions, agreement = self.completions(item, labels)
        return [
            {
                "prompt": self.prompt(item),
                "completions": completions,
                **provenance(item, labels, agreement),
            }
        ]

    def count(self, kept: pa.Table) -> None:
        count(self.stats, "items.rated", kept.num_rows)


class RatingsPairsExporter(RatingsExporter):
    format = "ratings-pairs"
    aggregation = AGGREGATION + (
        " Binarised like UltraFeedback: chosen = the response with the highest mean score, "
        "rejected = one of the strictly worse responses, picked by sha256(seed, external_id). "
        "Items whose responses all share the best score are left out and counted as ties."
    )

    def fields(self):
        return pair_fields(self) + [
            ("score_chosen", pa.float64()),
            ("score_rejected", pa.float64()),
        ]

    def rows(self, item: ItemRecord, labels: list[LabelRecord]) -> list[dict[str, Any]]:
        completions, agreement = self.completions(item, labels)
        scored = [c for c in completions if c["mean_score"] is not None]
        if not scored:
            self.stats["left_out.unrated"] += 1
            return []
        best = max(scored, key=lambda c: c["mean_score"])  # the first of equals: item order
        worse = [c for c in scored if c["mean_score"] < best["mean_score"]]
        if not worse:
            self.stats["left_out.ties"] += 1
            return []
        rejected = worse[split_hash(self.seed, item.external_id) % len(worse)]
        by_id = {r["id"]: r for r in item.responses}
        return [
            {
                **pair_row(self, item, by_id[best["id"]], by_id[rejected["id"]]),
                "score_chosen": best["mean_score"],
                "score_rejected": rejected["mean_score"],
                **provenance(item, labels, agreement),
            }
        ]

    def count(self, kept: pa.Table) -> None:
        pass


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
