"""What every exporter provides: what to read, its output columns (the Arrow schema, defined
once), and the conversion of a batch of read rows into a batch of output rows.

Two shapes of exporter share the rest of the export (build.py):
- ItemsExporter (pairwise): SQL aggregates each item's labels into counts, the rows are made
  from whole columns with Arrow kernels, no Python per row;
- LabelsExporter (listwise, spans, ratings): one read row per label; an item's labels are
  aggregated in Python (annotate/kinds/aggregate.py), an item with one label the cheap way.

Every output row keeps its item's provenance (external_id, n_labels, agreement, sources,
annotators, judges), its `split_key`, the group key its train/test side was drawn by
(annotate/splits.py: the prompt's content hash, or a metadata field), and the item's
`metadata` as canonical JSON, with the top-level fields a researcher asks for flattened into
columns `metadata.<field>` (MetadataColumns). Internal columns, named with a
leading "_", travel with a batch to the build and never reach the files: `_agreement` (the
item's, for the min_agreement filter and the card; null when the item has one label:
annotate.kinds.aggregate.agreement_of) and `_first` (the item's first row).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from django.db.models import F, Func, QuerySet, TextField
from django.db.models.functions import Cast

from annotate.models import Project

from ..formats import ExportError
from ..selection import labels_of, metadata_key, metadata_path, prompt_key

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
NAMES = pa.list_(pa.string())
PROVENANCE_FIELDS = [
    ("external_id", pa.string()),
    ("n_labels", pa.int32()),
    ("agreement", pa.float64()),
    ("sources", NAMES),
    ("annotators", NAMES),
    ("judges", NAMES),
    ("split_key", pa.string()),
    ("metadata", pa.string()),
]
INTERNAL_FIELDS = [("_agreement", pa.float64()), ("_first", pa.bool_())]

__all__ = ["MESSAGE", "MESSAGES", "ExportError", "Exporter", "LabelsExporter", "JSONRoot"]


def canonical_json(value) -> str:
    """JSON text with sorted keys and no spaces: the same for the same value on either
    database (PostgreSQL's jsonb reorders keys, SQLite keeps them as written)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def metadata_json(text: str | None) -> tuple[dict, str]:
    """An item's metadata (the database's JSON text) parsed, and as canonical JSON."""
    if text in (None, "{}"):  # most items: no parse
        return {}, "{}"
    metadata = orjson.loads(text)
    return metadata, canonical_json(metadata)


class MetadataColumns:
    """The flattened metadata fields of an export (options.metadata_fields): one column
    `metadata.<field>` each, typed by the field's values over the exported items (scan()):
    text, whole numbers (int64), numbers (float64) or booleans when all its values are of one
    of those, else each value's canonical JSON text; null where an item lacks it."""

    def __init__(self, names: list[str]):
        self.names = list(names)
        self.types: dict[str, str] = {}

    def scan(self, items: QuerySet) -> None:
        """Find each field's type from the metadata of `items` (one read, only when asked)."""
        if not self.names:
            return
        seen: dict[str, set[str]] = {name: set() for name in self.names}
        texts = items.annotate(m=json_text("metadata")).values_list("m", flat=True)
        for text in texts.iterator(chunk_size=5_000):
            metadata, _ = metadata_json(text)
            for name in self.names:
                value = metadata.get(name) if isinstance(metadata, dict) else None
                if value is not None:
                    seen[name].add(_json_kind(value))
        for name, kinds in seen.items():
            self.types[name] = (
                kinds.pop() if len(kinds) == 1 else _MIXED.get(frozenset(kinds), "json")
            )

    def fields(self) -> list[tuple[str, pa.DataType]]:
        return [
            (f"metadata.{name}", _ARROW_TYPES[self.types.get(name, "string")])
            for name in self.names
        ]

    def values(self, metadata) -> dict[str, Any]:
        """One item's values of the flattened columns."""
        out = {}
        for name in self.names:
            value = metadata.get(name) if isinstance(metadata, dict) else None
            kind = self.types.get(name, "string")
            if value is not None and kind == "json":
                value = canonical_json(value)
            elif value is not None and kind == "float64":
                value = float(value)
            out[f"metadata.{name}"] = value
        return out


def _json_kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    return "string" if isinstance(value, str) else "json"


_MIXED = {frozenset({"int64", "float64"}): "float64"}
_ARROW_TYPES = {
    "string": pa.string(),
    "json": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
}


class JSONRoot(Func):
    """A JSON column's top value as text: a string's characters, else its JSON text."""

    output_field = TextField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="(%(expressions)s #>> '{}')", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="json_extract(%(expressions)s, '$')")


class OfItem(Func):
    """An expression of the item's own columns in a query grouped by the item's id: no GROUP BY
    entry of its own (PostgreSQL knows it depends on the id; SQLite does not ask)."""

    template = "%(expressions)s"

    def get_group_by_cols(self):
        return []


def json_text(field: str):
    return Cast(F(field), TextField())


def micros(top: pa.Array, n: pa.Array) -> pa.Array:
    """round(top / n, 6) in millionths, half up, in integers: a share's or a mean's 6 decimals
    (the same on every database and in every format)."""
    top, n = pc.cast(top, pa.int64()), pc.cast(n, pa.int64())
    return pc.divide(pc.add(pc.multiply(top, 2_000_000), n), pc.multiply(n, 2))


def of_micros(values: pa.Array) -> pa.Array:
    return pc.divide(pc.cast(values, pa.float64()), 1_000_000.0)


def passes_agreement(filters: dict, agreement: pa.Array) -> pa.Array:
    """Whether items with these agreements pass the filters: at least min_agreement; an item
    with one label (agreement null, n/a) passes when filters["keep_single_label"]."""
    at_least = pc.greater_equal(agreement, filters["min_agreement"])
    return pc.fill_null(at_least, filters["keep_single_label"])


def count(stats: Counter, key: str, value) -> None:
    """stats[key] += value, leaving zero counts out of the card."""
    value = int(value.as_py() if isinstance(value, pa.Scalar) else value or 0)
    if value:
        stats[key] += value


class Exporter:
    """Base class: subclasses set `format`, `kind`, `aggregation` and implement fields(),
    query() and convert().

    `chat` is true when any exported item has a chat prompt: the prompt column is then a message
    list in every row (text prompts become one user message), so that the schema is one type.
    """

    format: ClassVar[str]
    kind: ClassVar[str]  # the project kind whose labels it reads
    aggregation: ClassVar[str]  # one paragraph for the dataset card
    internal_fields: ClassVar[list] = []  # more "_" columns for count()
    page_items: ClassVar[int] = 10_000  # items read per page (peak RSS vs queries)

    def __init__(
        self,
        *,
        config: dict,
        chat: bool = False,
        seed: int = 0,
        split_by: str = "prompt",
        metadata_fields: list[str] | None = None,
    ):
        self.config = config
        self.chat = chat
        self.seed = seed
        self.split_by = split_by
        self.split_path = None if split_by == "prompt" else metadata_path(split_by)
        self.metadata = MetadataColumns(metadata_fields or [])
        self.stats: Counter[str] = Counter()

    def split_key(self, external_id: str, prompt: str | list[dict], metadata: dict) -> str:
        """An item's group key for the train/test split; ExportError when it has none (an
        item changed since the build checked them all)."""
        if self.split_path is None:
            return prompt_key(prompt)
        key = metadata_key(metadata, self.split_path)
        if key is None:
            raise ExportError(f"item {external_id!r} has no {self.split_by} to split by")
        return key

    def prompt_type(self) -> pa.DataType:
        return MESSAGES if self.chat else pa.string()

    def fields(self) -> list[tuple[str, pa.DataType]]:
        raise NotImplementedError

    def output_fields(self) -> list[tuple[str, pa.DataType]]:
        return self.fields() + PROVENANCE_FIELDS + self.metadata.fields()

    def schema(self) -> pa.Schema:
        return pa.schema(self.output_fields(), metadata={"prefhub.format": self.format})

    def batch_schema(self) -> pa.Schema:
        """The schema of convert()'s tables: the output columns and the internal ones."""
        return pa.schema(self.output_fields() + INTERNAL_FIELDS + self.internal_fields)

    def item_columns(self, external_id: str, prompt, metadata_text: str | None) -> dict:
        """An item's split_key, metadata and flattened metadata columns (every format's)."""
        metadata, text = metadata_json(metadata_text)
        return {
            "split_key": self.split_key(external_id, prompt, metadata),
            "metadata": text,
            **self.metadata.values(metadata),
        }

    def prepare(self, project: Project, filters: dict) -> None:
        """Called before schema(): an exporter whose columns depend on the data asks here."""

    def query(
        self, project: Project, filters: dict
    ) -> tuple[Callable[[int, int], QuerySet], pa.Schema]:
        """What to read: the values_list() queryset, in item order, of the items with ids in
        [low, high) (a page), and its columns' types."""
        raise NotImplementedError

    def convert(self, batch: pa.RecordBatch) -> pa.Table | None:
        """Output rows (batch_schema()) of the items complete in this batch of read rows."""
        raise NotImplementedError

    def finish(self) -> pa.Table | None:
        """Output rows of what convert() held back (an item whose labels may go on)."""
        return None

    def count(self, kept: pa.Table) -> None:
        """Count the exported rows (past the min_agreement filter) in `stats`."""


# Exporters that aggregate an item's labels in Python ----------------------------------------


class ItemRecord(NamedTuple):
    id: int
    external_id: str
    prompt: str | list[dict]
    responses: list[dict]
    columns: dict  # Exporter.item_columns: split_key, metadata, flattened metadata


class LabelRecord(NamedTuple):
    source: str
    annotator: str  # username, "" for judge and anonymous imported labels
    judge: str  # judge name, "" for the rest
    label: dict


LABEL_ROWS = pa.schema(
    [("item_id", pa.int64())]
    + [(name, pa.string()) for name in ("external_id", "prompt", "responses", "metadata")]
    + [("label", pa.string())]
    + [(name, pa.string()) for name in ("source", "annotator", "judge")]
)


def provenance(
    item: ItemRecord, labels: list[LabelRecord], agreement: float | None
) -> dict[str, Any]:
    return {
        "external_id": item.external_id,
        "n_labels": len(labels),
        "agreement": None if agreement is None else round(agreement, 6),
        "sources": sorted({lb.source for lb in labels}),
        "annotators": sorted({lb.annotator for lb in labels if lb.annotator}),
        "judges": sorted({lb.judge for lb in labels if lb.judge}),
        **item.columns,
    }


def as_messages(prompt: str | list[dict]) -> list[dict]:
    """A prompt as chat messages: text becomes one user message."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def pair_fields(exporter: Exporter) -> list[tuple[str, pa.DataType]]:
    """The TRL columns of a preference pair, for every pairs format."""
    return [
        ("prompt", exporter.prompt_type()),
        ("chosen", exporter.prompt_type()),
        ("rejected", exporter.prompt_type()),
        ("chosen_id", pa.string()),
        ("rejected_id", pa.string()),
        ("chosen_model", pa.string()),
        ("rejected_model", pa.string()),
    ]


def pair_row(exporter: Exporter, item: ItemRecord, chosen: dict, rejected: dict) -> dict[str, Any]:
    """pair_fields' values for one pair; chosen and rejected are item responses."""

    def completion(response: dict):
        text = response["text"]
        return [{"role": "assistant", "content": text}] if exporter.chat else text

    return {
        "prompt": exporter.prompt(item),
        "chosen": completion(chosen),
        "rejected": completion(rejected),
        "chosen_id": chosen["id"],
        "rejected_id": rejected["id"],
        "chosen_model": chosen.get("model") or "",
        "rejected_model": rejected.get("model") or "",
    }


class LabelsExporter(Exporter):
    """Reads one row per label (item by item) and makes each item's rows in rows()."""

    page_items = 2_500  # a page's rows become Python dicts: 10,000 took ~480 MB at 1M

    def prepare(self, project: Project, filters: dict) -> None:
        self._pending: tuple[ItemRecord, list[LabelRecord]] | None = None

    def prompt(self, item: ItemRecord):
        return as_messages(item.prompt) if self.chat else item.prompt

    def query(self, project: Project, filters: dict):
        names = ["item_id", "item__external_id", "prompt_json", "responses_json"]
        names += ["metadata_json", "label_json"]
        names += ["source", "annotator__username", "judge__name"]

        def page(low: int, high: int):
            labels = labels_of(project, filters).filter(item_id__gte=low, item_id__lt=high)
            labels = labels.annotate(
                prompt_json=json_text("item__prompt"),
                responses_json=json_text("item__responses"),
                metadata_json=json_text("item__metadata"),
                label_json=json_text("label"),
            )
            return labels.order_by("item_id", "id").values_list(*names)

        return page, LABEL_ROWS

    def rows(self, item: ItemRecord, labels: list[LabelRecord]) -> list[dict[str, Any]]:
        """The output rows of one item with at least one label; each has an `agreement`.
        Counts of what is left out go to `stats` here; counts of what is exported in count()."""
        raise NotImplementedError

    def convert(self, batch: pa.RecordBatch) -> pa.Table | None:
        loads, items = orjson.loads, []
        pending = self._pending
        for item_id, ext, prompt, responses, metadata, label, source, user, judge in zip(
            *(column.to_pylist() for column in batch.columns), strict=True
        ):
            if pending is None or pending[0].id != item_id:
                if pending is not None:
                    items.append(pending)
                prompt = loads(prompt)
                columns = self.item_columns(ext, prompt, metadata)
                pending = (ItemRecord(item_id, ext, prompt, loads(responses), columns), [])
            pending[1].append(LabelRecord(source, user or "", judge or "", loads(label)))
        self._pending = pending  # its labels may go on in the next batch
        return self._table(items)

    def finish(self) -> pa.Table | None:
        pending, self._pending = self._pending, None
        return self._table([pending] if pending else [])

    def _table(self, items) -> pa.Table | None:
        rows, agreements, firsts = [], [], []
        stats = self.stats
        for item, labels in items:
            stats["items"] += 1
            stats["labels"] += len(labels)
            stats.update("sources." + lb.source for lb in labels)
            made = self.rows(item, labels)
            if made:
                rows += made
                agreements += [made[0]["agreement"]] * len(made)
                firsts += [True] + [False] * (len(made) - 1)
        if not rows:
            return None
        schema = self.batch_schema()
        internal = {"_agreement": agreements, "_first": firsts}
        columns = [
            pa.array(internal[f.name] if f.name in internal else [r[f.name] for r in rows], f.type)
            for f in schema
        ]
        return pa.Table.from_arrays(columns, schema=schema)
