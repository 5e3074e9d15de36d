"""Listwise → prompt, responses, ranking (tie groups of indices into responses, best first:
[[1], [0, 2]] ranks response 1 first and ties 0 with 2); and the pairs that each aggregated
ranking implies, in the pairwise format ("listwise-pairs"), tied pairs left out."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from annotate.kinds.aggregate import rank_indices

from .base import ItemRows, Items, LabelsExporter, count, pair_columns, pair_fields

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


def _rankings(items: Items) -> list[tuple[tuple, tuple, float | None]]:
    """Each item's (tie groups of response indices, scores in response order, agreement)."""
    return [
        rank_indices(ids, [label.get("ranking", []) for label in labels])
        for ids, labels in zip(items.ids(), items.labels, strict=True)
    ]


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

    def item_rows(self, items: Items) -> ItemRows:
        rankings = _rankings(items)
        rounded: dict[tuple, list[float]] = {}  # the few distinct scores of a batch, rounded
        scores = [
            rounded.get(s) or rounded.setdefault(s, [round(x, 6) for x in s])
            for _, s, _ in rankings
        ]
        agreements = [agreement for *_, agreement in rankings]
        columns = {
            "responses": items.per_response(items.response_texts),
            "response_ids": items.per_response(items.response_ids),
            "models": items.per_response(items.models),
            "ranking": pa.array(
                [groups for groups, *_ in rankings], pa.list_(pa.list_(pa.int32()))
            ),
            "scores": pa.array(scores, pa.list_(pa.float64())),
        }
        return ItemRows(columns, pa.array(range(items.count), pa.int64()), agreements, agreements)

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

    def item_rows(self, items: Items) -> ItemRows:
        item, chosen, rejected, ranks, agreements = [], [], [], ([], []), []
        item_agreements = []
        for k, (groups, _scores, agreement) in enumerate(_rankings(items)):
            before = len(item)
            for i, better in enumerate(groups):
                for j in range(i + 1, len(groups)):
                    for c in better:
                        for r in groups[j]:
                            item.append(k)
                            chosen.append(c)
                            rejected.append(r)
                            ranks[0].append(i)
                            ranks[1].append(j)
            agreements += [agreement] * (len(item) - before)
            item_agreements.append(agreement)
            count(
                self.stats, "left_out.tied_pairs", sum(len(g) * (len(g) - 1) // 2 for g in groups)
            )
            if len(item) == before:
                count(self.stats, "left_out.all_tied", 1)
        columns = pair_columns(self, items, item, chosen, rejected)
        columns["rank_chosen"] = pa.array(ranks[0], pa.int32())
        columns["rank_rejected"] = pa.array(ranks[1], pa.int32())
        return ItemRows(columns, pa.array(item, pa.int64()), agreements, item_agreements)

    def count(self, kept: pa.Table) -> None:
        count(self.stats, "pairs", kept.num_rows)
