"""Ratings → UltraFeedback-like rows (every response's mean aspect scores and rationales), and
the binarised pairwise view ("ratings-pairs"): the best response by mean score against a worse
one, picked deterministically from the seed and the item's external_id."""

from __future__ import annotations

import pyarrow as pa

from annotate.kinds.aggregate import mean_ratings

from ..selection import split_hash
from .base import ItemRows, Items, LabelsExporter, count, pair_columns, pair_fields, rounded

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
        return [("prompt", self.prompt_type()), ("completions", pa.list_(self.completion()))]

    def completion(self) -> pa.StructType:
        return pa.struct(
            [
                ("id", pa.string()),
                ("model", pa.string()),
                ("response", pa.string()),
                ("ratings", pa.struct([(name, pa.float64()) for name in self.aspects])),
                ("mean_score", pa.float64()),
                ("rationales", pa.list_(pa.string())),
            ]
        )

    def rated(self, items: Items) -> tuple[dict[str, pa.Array], list[float | None]]:
        """Every response's (item by item) mean scores per aspect, mean score and
        rationales, as flat columns; and each item's agreement."""
        scale, aspects = self.config["scale"], self.aspects
        means_per_response, rationales, agreements = [], [], []
        for ids, labels in zip(items.ids(), items.labels, strict=True):
            means, agreement = mean_ratings(ids, aspects, labels, scale["min"], scale["max"])
            agreements.append(agreement)
            means_per_response += [means[rid] for rid in ids]
            rated = [label.get("responses", {}) for label in labels]
            for rid in ids:
                given = (by_response.get(rid, {}) for by_response in rated)
                rationales.append([r["rationale"] for r in given if r.get("rationale")])
        means = means_per_response
        flat = {
            "means": {a: rounded([scores.get(a) for scores in means]) for a in aspects},
            "mean_score": rounded([sum(s.values()) / len(s) if s else None for s in means]),
            "rationales": pa.array(rationales, pa.list_(pa.string())),
        }
        return flat, agreements

    def item_rows(self, items: Items) -> ItemRows:
        flat, agreements = self.rated(items)
        kind = self.completion()
        ratings = pa.StructArray.from_arrays(
            list(flat["means"].values()),
            fields=list(kind.field("ratings").type),
        )
        completions = pa.StructArray.from_arrays(
            [
                items.response_ids,
                items.models,
                items.response_texts,
                ratings,
                flat["mean_score"],
                flat["rationales"],
            ],
            fields=list(kind),
        )
        columns = {"completions": items.per_response(completions)}
        return ItemRows(columns, pa.array(range(items.count), pa.int64()), agreements, agreements)

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

    def item_rows(self, items: Items) -> ItemRows:
        flat, agreements = self.rated(items)
        mean_scores = flat["mean_score"].to_pylist()
        offsets = items.response_offsets.to_pylist()
        external_ids = items.external_id.to_pylist()
        item, chosen, rejected, scores, item_agreements = [], [], [], ([], []), []
        for k, agreement in enumerate(agreements):
            item_agreements.append(agreement)
            means = mean_scores[offsets[k] : offsets[k + 1]]
            scored = [(j, mean) for j, mean in enumerate(means) if mean is not None]
            if not scored:
                self.stats["left_out.unrated"] += 1
                continue
            best = max(scored, key=lambda c: c[1])  # the first of equals: item order
            worse = [c for c in scored if c[1] < best[1]]
            if not worse:
                self.stats["left_out.ties"] += 1
                continue
            worst = worse[split_hash(self.seed, external_ids[k]) % len(worse)]
            item.append(k)
            chosen.append(best[0])
            rejected.append(worst[0])
            scores[0].append(best[1])
            scores[1].append(worst[1])
        columns = pair_columns(self, items, item, chosen, rejected)
        columns["score_chosen"] = pa.array(scores[0], pa.float64())
        columns["score_rejected"] = pa.array(scores[1], pa.float64())
        agreements = [agreements[k] for k in item]
        return ItemRows(columns, pa.array(item, pa.int64()), agreements, item_agreements)

    def count(self, kept: pa.Table) -> None:
        pass
