"""Pairwise → TRL's preference format: prompt, chosen, rejected (+ margin, provenance).

Text prompts give plain strings; when the export holds a chat prompt, every row is
conversational: prompt = messages, chosen/rejected = [{"role": "assistant", "content": ...}].

The database counts each item's labels by choice and source and sums the majority's strengths
(Annotation's generated `choice` and `strength` columns); the rows are then made a whole batch at
a time by Arrow kernels. Python runs per row only for chat prompts and for items labelled by
several people (their names).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from django.db.models import Case, Count, F, Max, Min, Q, Sum, When
from django.db.models.fields.json import KT
from django.db.models.lookups import GreaterThan

from annotate.kinds.aggregate import MIN_LABELS_FOR_AGREEMENT
from annotate.models import Item, Project

from ..selection import item_q, label_q, labels_of
from .base import (
    NAMES,
    SOURCE_NAMES,
    Exporter,
    JSONRoot,
    OfItem,
    count,
    json_text,
    label_sources,
    micros,
    of_micros,
    pair_fields,
    passes_agreement,
)

A = "annotations__"
READ = pa.schema(
    [("id", pa.int64()), ("external_id", pa.string()), ("prompt", pa.string())]
    + [("chat", pa.bool_()), ("metadata", pa.string())]
    + [(name, pa.string()) for name in ("chosen_id", "chosen", "rejected_id", "rejected")]
    + [(name, pa.string()) for name in ("chosen_model", "rejected_model")]
    + [(name, pa.int64()) for name in ("n", "na", "nb", "nt", "n_human", "n_imported")]
    + [(name, pa.int64()) for name in ("n_judge", "sa", "ca", "sb", "cb")]
    + [(name, pa.string()) for name in ("u1", "u2", "j1", "j2")]
)
# Every combination of sources, by bits (human 1, imported 2, judge 4).
SOURCE_LISTS = pa.array(
    [[s for k, s in enumerate(SOURCE_NAMES) if code >> k & 1] for code in range(8)], NAMES
)


def _pick(this, other, key: str):
    """Response 0's `key` when `this` count beats `other`, else response 1's."""
    return Case(
        When(GreaterThan(this, other), then=KT(f"responses__0__{key}")),
        default=KT(f"responses__1__{key}"),
    )


def _labels(**lookups) -> Q:
    return Q(**{A + key: value for key, value in lookups.items()})


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
    internal_fields = [("_chosen_a", pa.bool_())]
    margin = True  # set by prepare(): whether every exported row has a margin

    def prepare(self, project: Project, filters: dict) -> None:
        self.project, self.filters = project, filters
        # A null margin is rejected by TRL's margin loss: the column only when every row has one.
        self.margin = not self._majority_without_strength()

    def fields(self):
        return pair_fields(self) + ([("margin", pa.float64())] if self.margin else [])

    def counted(self, items, labels: Q | None = None):
        """The items with their filtered labels (and `labels`) counted by choice, source and
        strength."""
        return (
            items.filter(label_q(self.filters, A) & (labels or Q()))
            .values("id")
            .annotate(
                n=Count(A + "id"),
                na=Count(A + "id", filter=_labels(choice="A")),
                nb=Count(A + "id", filter=_labels(choice="B")),
                nt=Count(A + "id", filter=_labels(choice="tie")),
                sa=Sum(A + "strength", filter=_labels(choice="A")),
                ca=Count(A + "strength", filter=_labels(choice="A")),
                sb=Sum(A + "strength", filter=_labels(choice="B")),
                cb=Count(A + "strength", filter=_labels(choice="B")),
            )
        )

    def _majority_without_strength(self) -> bool:
        """Whether an item that gives a row (a majority for A or B, its share at least
        min_agreement) has no strength among its majority's labels. Only items with an A or B
        label lacking a strength can: the query starts from those."""
        lacking = labels_of(self.project, self.filters).filter(
            choice__in=("A", "B"), strength__isnull=True
        )
        items = Item.objects.filter(pk__in=lacking.values("item_id"))
        rows = self.counted(items).values_list("n", "na", "nb", "nt", "ca", "cb")
        for n, na, nb, nt, ca, cb in rows.iterator():
            top, strengths = (na, ca) if na > nb else (nb, cb)
            if top > min(na, nb) and top > nt and not strengths:
                share = of_micros(micros(pa.array([top]), pa.array([n])))[0].as_py()
                agreement = pa.array([share if n >= MIN_LABELS_FOR_AGREEMENT else None])
                if passes_agreement(self.filters, agreement)[0].as_py():
                    return True
        return False

    def query(self, project: Project, filters: dict):
        columns = ["ext" if f == "external_id" else f for f in READ.names]
        renamed = {"prompt": "text", "chat": "is_chat", "metadata": "meta"}
        columns = [renamed.get(f, f) for f in columns]

        def page(low: int, high: int):
            # Both sides' ids bounded: each index scan starts at the page.
            items = Item.objects.filter(item_q(project, filters), id__gte=low, id__lt=high)
            labels = _labels(item_id__gte=low, item_id__lt=high)
            return self._page(items, labels).order_by("id").values_list(*columns)

        return page, READ

    def _page(self, items, labels: Q):
        return self.counted(items, labels).annotate(
            n_human=Count(A + "id", filter=_labels(source="human")),
            n_imported=Count(A + "id", filter=_labels(source="imported")),
            n_judge=Count(A + "id", filter=_labels(source="judge")),
            u1=Min(A + "annotator__username"),
            u2=Max(A + "annotator__username"),
            j1=Min(A + "judge__name"),
            j2=Max(A + "judge__name"),
            ext=OfItem(F("external_id")),
            text=OfItem(JSONRoot("prompt")),
            is_chat=OfItem(F("chat")),
            meta=OfItem(json_text("metadata")),
            # The majority's response first (the database picks: no copy of the texts here).
            chosen_id=_pick(F("na"), F("nb"), "id"),
            chosen=_pick(F("na"), F("nb"), "text"),
            rejected_id=_pick(F("nb"), F("na"), "id"),
            rejected=_pick(F("nb"), F("na"), "text"),
            chosen_model=_pick(F("na"), F("nb"), "model"),
            rejected_model=_pick(F("nb"), F("na"), "model"),
        )

    def convert(self, batch: pa.RecordBatch) -> pa.Table | None:
        col = batch.column
        na, nb, nt = col("na"), col("nb"), col("nt")
        a_top = pc.and_(pc.greater(na, nb), pc.greater(na, nt))
        b_top = pc.and_(pc.greater(nb, na), pc.greater(nb, nt))
        tie_top = pc.and_(pc.greater(nt, na), pc.greater(nt, nb))
        exported = pc.or_(a_top, b_top)
        self._count_read(batch, exported, tie_top)
        rows = batch.filter(exported)
        if not rows.num_rows:
            return None
        a = a_top.filter(exported)
        col = rows.column
        top = pc.if_else(a, col("na"), col("nb"))
        # annotate.kinds.aggregate.agreement_of on whole columns: n/a for a single label.
        agreement = pc.if_else(
            pc.greater_equal(col("n"), MIN_LABELS_FOR_AGREEMENT),
            of_micros(micros(top, col("n"))),
            pa.scalar(None, pa.float64()),
        )
        sources = self._sources(rows)
        columns = {
            "prompt": self.prompts(col("prompt"), col("chat")),
            "chosen": self.completions(col("chosen")),
            "rejected": self.completions(col("rejected")),
            "chosen_id": col("chosen_id"),
            "rejected_id": col("rejected_id"),
            "chosen_model": pc.fill_null(col("chosen_model"), ""),
            "rejected_model": pc.fill_null(col("rejected_model"), ""),
            "margin": self._margins(a, rows) if self.margin else None,
            "external_id": col("external_id"),
            "n_labels": pc.cast(col("n"), pa.int32()),
            "agreement": agreement,
            "sources": sources,
            "label_sources": label_sources(sources),
            **self._names(rows),
            **self.item_columns_of(rows),
            "_agreement": agreement,
            "_first": pa.repeat(pa.scalar(True), rows.num_rows),
            "_chosen_a": a,
        }
        schema = self.batch_schema()
        arrays = [
            columns[f.name]
            if isinstance(columns[f.name], pa.Array)
            else pa.array(columns[f.name], f.type)
            for f in schema
        ]
        return pa.Table.from_arrays(arrays, schema=schema)

    def _count_read(self, batch, exported, tie_top) -> None:
        stats, col = self.stats, batch.column
        count(stats, "items", batch.num_rows)
        count(stats, "labels", pc.sum(col("n")))
        for choice, column in (("A", "na"), ("B", "nb"), ("tie", "nt")):
            count(stats, f"labels.{choice}", pc.sum(col(column)))
        for source in SOURCE_NAMES:
            count(stats, f"sources.{source}", pc.sum(col(f"n_{source}")))
        ties = pc.sum(pc.cast(tie_top, pa.int64())).as_py() or 0
        count(stats, "left_out.ties", ties)
        n_exported = pc.sum(pc.cast(exported, pa.int64())).as_py() or 0
        count(stats, "left_out.no_majority", batch.num_rows - n_exported - ties)

    def _margins(self, a: pa.Array, rows: pa.RecordBatch) -> pa.Array:
        """The mean strength of the majority's labels; null where none has one."""
        col = rows.column
        total = pc.fill_null(pc.if_else(a, col("sa"), col("sb")), 0)
        n = pc.if_else(a, col("ca"), col("cb"))
        has = pc.greater(n, 0)
        mean = of_micros(micros(total, pc.if_else(has, n, 1)))
        return pc.if_else(has, mean, pa.scalar(None, pa.float64()))

    def _sources(self, rows: pa.RecordBatch) -> pa.Array:
        code = pa.repeat(pa.scalar(0, pa.int64()), rows.num_rows)
        for bit, source in enumerate(SOURCE_NAMES):
            present = pc.cast(pc.greater(rows.column(f"n_{source}"), 0), pa.int64())
            code = pc.add(code, pc.multiply(present, 1 << bit))
        return SOURCE_LISTS.take(code)

    def _names(self, rows: pa.RecordBatch) -> dict[str, pa.Array]:
        """annotators and judges: sorted names. One name per item from the aggregate; the
        names of items with several are read in one query per batch."""
        col = rows.column
        several = pc.fill_null(
            pc.or_kleene(pc.not_equal(col("u1"), col("u2")), pc.not_equal(col("j1"), col("j2"))),
            False,
        )
        if not pc.any(several).as_py():
            return {"annotators": _singletons(col("u1")), "judges": _singletons(col("j1"))}
        ids = rows.column("id").filter(several).to_pylist()
        found: dict[int, tuple[set, set]] = {i: (set(), set()) for i in ids}
        labels = labels_of(self.project, self.filters).filter(item_id__in=ids)
        for item_id, user, judge in labels.values_list(
            "item_id", "annotator__username", "judge__name"
        ):
            found[item_id][0].add(user or "")
            found[item_id][1].add(judge or "")
        out = {}
        for k, (name, column) in enumerate((("annotators", "u1"), ("judges", "j1"))):
            lists = [
                sorted(found[i][k] - {""}) if i in found else ([one] if one else [])
                for i, one in zip(
                    rows.column("id").to_pylist(), col(column).to_pylist(), strict=True
                )
            ]
            out[name] = pa.array(lists, NAMES)
        return out

    def count(self, kept: pa.Table) -> None:
        chosen_a = pc.sum(pc.cast(kept.column("_chosen_a"), pa.int64())).as_py() or 0
        count(self.stats, "chosen.A", chosen_a)
        count(self.stats, "chosen.B", kept.num_rows - chosen_a)


def _singletons(names: pa.Array) -> pa.Array:
    """One-name lists from a column of names (null: an empty list)."""
    present = pc.cast(pc.is_valid(names), pa.int32())
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum(present)])
    return pa.ListArray.from_arrays(offsets, names.drop_null().cast(pa.string()))
