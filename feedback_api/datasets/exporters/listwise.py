"""Listwise → prompt, responses, ranking (indices into responses, best first); and the pairs
that each aggregated ranking implies, in the pairwise format ("listwise-pairs")."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from annotate.kinds.aggregate import aggregate_rankings

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
    "Bradley-Terry: log-strengths fitted by Hunter's MM algorithm on every pair each ranking "
    "orders (a tie within a ranking is half a win each way; a prior of 0.1 wins each way per "
    "pair keeps scores finite), ties in the scores broken by Borda count, then response order. "
    "With complete rankings the order equals the Borda order. `agreement` is the share of "
    "(label, pair) comparisons that agree with the aggregate ranking."
)


def _aggregate(item: ItemRecord, labels: list[LabelRecord]):
    ids = [r["id"] for r in item.responses]
    return aggregate_rankings(ids, [lb.label.get("ranking", []) for lb in labels])


class ListwiseExporter(LabelsExporter):
    format = "listwise"
    kind = "listwise"
    aggregation = AGGREGATION

    def fields(self):
        return [
            ("prompt", self.prompt_type()),
            ("responses", pa.list_(pa.string())),
            ("response_ids", pa.list_(pa.string())),
            ("models", pa.list_(pa.string())),
            ("ranking", pa.list_(pa.int32())),
            ("scores", pa.list_(pa.float64())),
        ]

    def rows(self, item: ItemRecord, labels: list[LabelRecord]) -> list[dict[str, Any]]:
        order, scores, agreement = _aggregate(item, labels)
        ids = [r["id"] for r in item.responses]
        return [
            {
                "prompt": self.prompt(item),
                "responses": [r["text"] for r in item.responses],
                "response_ids": ids,
                "models": [r.get("model") or "" for r in item.responses],
                "ranking": [ids.index(rid) for rid in order],
                "scores": [round(scores[rid], 6) for rid in ids],
                **provenance(item, labels, agreement),
            }
        ]

    def count(self, kept: pa.Table) -> None:
        count(self.stats, "items.ranked", kept.num_rows)
        sizes = pc.value_counts(pc.list_value_length(kept.column("responses")))
        for entry in sizes.to_pylist():
            count(self.stats, f"responses.{entry['values']}", entry["counts"])


class ListwisePairsExporter(LabelsExporter):
    format = "listwise-pairs"
    kind = "listwise"
    aggregation = AGGREGATION + (
        " Each aggregated ranking of K responses gives K(K-1)/2 pairs, the better one chosen; "
        "`rank_chosen`/`rank_rejected` are their positions (0 = best)."
    )

    def fields(self):
        return pair_fields(self) + [("rank_chosen", pa.int32()), ("rank_rejected", pa.int32())]

    def rows(self, item: ItemRecord, labels: list[LabelRecord]) -> list[dict[str, Any]]:
        order, _scores, agreement = _aggregate(item, labels)
        by_id = {r["id"]: r for r in item.responses}
        common = provenance(item, labels, agreement)
        rows = []
        for i, better in enumerate(order):
            for j in range(i + 1, len(order)):
                pair = pair_row(self, item, by_id[better], by_id[order[j]])
                rows.append({**pair, "rank_chosen": i, "rank_rejected": j, **common})
        return rows

    def count(self, kept: pa.Table) -> None:
        count(self.stats, "pairs", kept.num_rows)
