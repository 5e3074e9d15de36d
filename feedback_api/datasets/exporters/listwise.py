"""Listwise → prompt, responses, ranking (tie groups of indices into responses, best first:
[[1], [0, 2]] ranks response 1 first and ties 0 with 2); and the pairs that each aggregated
ranking implies, in the pairwise format ("listwise-pairs"), tied pairs left out."""

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
    "pair keeps scores finite). Responses with equal scores and equal Borda counts are tied (a "
    "label's tie, or labels that cancel out): ties are kept, never broken by response order. "
    "With complete rankings the order equals the Borda order. `agreement` is the share of "
    "(label, pair) comparisons in which the label relates the pair (better, worse or tied) as "
    "the aggregate ranking does."
)
RANKING = (
    "`ranking` lists tie groups best first, each a list of indices into `responses` (and "
    "`response_ids`, `models`): `[[1], [0, 2]]` ranks response 1 first and ties 0 with 2; a "
    "strict ranking has one index per group. `scores` holds each response's Bradley-Terry "
    "log-strength in `responses` order, equal for tied responses (sort by it, descending, for "
    "a plain order)."
)


def _aggregate(item: ItemRecord, labels: list[LabelRecord]):
    ids = [r["id"] for r in item.responses]
    return aggregate_rankings(ids, [lb.label.get("ranking", []) for lb in labels])


class ListwiseExporter(LabelsExporter):
    format = "listwise"
    kind = "listwise"
    aggregation = AGGREGATION + " " + RANKING

    def fields(self):
        return [
            ("prompt", self.prompt_type()),
            ("responses", pa.list_(pa.string())),
            ("response_ids", pa.list_(pa.string())),
            ("models", pa.list_(pa.string())),
            ("ranking", pa.list_(pa.list_(pa.int32()))),
            ("scores", pa.list_(pa.float64())),
        ]

    def rows(self, item: ItemRecord, labels: list[LabelRecord]) -> list[dict[str, Any]]:
        groups, scores, agreement = _aggregate(item, labels)
        ids = [r["id"] for r in item.responses]
        return [
            {
                "prompt": self.prompt(item),
                "responses": [r["text"] for r in item.responses],
                "response_ids": ids,
                "models": [r.get("model") or "" for r in item.responses],
                "ranking": [[ids.index(rid) for rid in group] for group in groups],
                "scores": [round(scores[rid], 6) for rid in ids],
                **provenance(item, labels, agreement),
            }
        ]

    def count(self, kept: pa.Table) -> None:
        count(self.stats, "items.ranked", kept.num_rows)
        groups = pc.list_value_length(kept.column("ranking"))
        tied = pc.less(groups, pc.list_value_length(kept.column("responses")))
        count(self.stats, "items.with_ties", pc.sum(pc.cast(tied, pa.int64())))
        sizes = pc.value_counts(pc.list_value_length(kept.column("responses")))
        for entry in sizes.to_pylist():
            count(self.stats, f"responses.{entry['values']}", entry["counts"])


class ListwisePairsExporter(LabelsExporter):
    format = "listwise-pairs"
    kind = "listwise"
    aggregation = AGGREGATION + (
        " Each aggregated ranking gives one pair per two responses in different tie groups, "
        "the better one chosen; `rank_chosen`/`rank_rejected` are their groups' positions (0 = "
        "best). Tied pairs are left out (counted as left_out.tied_pairs); an item whose "
        "responses are all tied gives no pair (counted as left_out.all_tied)."
    )

    def fields(self):
        return pair_fields(self) + [("rank_chosen", pa.int32()), ("rank_rejected", pa.int32())]

    def rows(self, item: ItemRecord, labels: list[LabelRecord]) -> list[dict[str, Any]]:
        groups, _scores, agreement = _aggregate(item, labels)
        by_id = {r["id"]: r for r in item.responses}
        common = provenance(item, labels, agreement)
        rows = []
        for i, better in enumerate(groups):
            for j in range(i + 1, len(groups)):
                for chosen in better:
                    for rejected in groups[j]:
                        pair = pair_row(self, item, by_id[chosen], by_id[rejected])
                        rows.append({**pair, "rank_chosen": i, "rank_rejected": j, **common})
        tied = sum(len(g) * (len(g) - 1) // 2 for g in groups)
        count(self.stats, "left_out.tied_pairs", tied)
        if not rows:
            count(self.stats, "left_out.all_tied", 1)
        return rows

    def count(self, kept: pa.Table) -> None:
        count(self.stats, "pairs", kept.num_rows)
