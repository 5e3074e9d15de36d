"""What every exporter provides: what to read, its output columns (the Arrow schema, defined
once), and the conversion of a batch of read rows into a batch of output rows.

Two shapes of exporter share the rest of the export (build.py):
- pairwise: SQL aggregates each item's labels into counts, the rows are made from whole
  columns with Arrow kernels, no Python per row;
- LabelsExporter (listwise, spans, ratings): one read row per label; the items' own columns
  (prompt, responses: JSON parsed by Arrow) and provenance are made a batch at a time, and
  only each item's aggregate runs in Python (annotate/kinds/aggregate.py), into flat lists.

Every output row keeps its item's provenance (external_id, n_labels, agreement, sources,
label_sources: the mix of people and judges its label came from, by label_sources() here,
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
import pyarrow.json as pajson
from django.db.models import F, Func, QuerySet, TextField
from django.db.models.functions import Cast

from annotate.models import Annotation, Project

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
    ("label_sources", pa.string()),
    ("annotators", NAMES),
    ("judges", NAMES),
    ("split_key", pa.string()),
    ("metadata", pa.string()),
]
INTERNAL_FIELDS = [("_agreement", pa.float64()), ("_first", pa.bool_())]

__all__ = ["MESSAGE", "MESSAGES", "ExportError", "Exporter", "LabelsExporter", "JSONRoot"]

# Label sources (Annotation.Source), sorted: a row's `sources` lists its item's in this order.
SOURCE_NAMES = tuple(sorted(Annotation.Source.values))  # human, imported, judge
LABEL_SOURCES_RULE = (
    "`label_sources` says whose labels made the row: `human` (people's only), `judge` (judges' "
    "only), `both` (people's and judges'); labels imported with the data are from neither we "
    "know of: `imported` when the row has only those, and left out of the mix when people or "
    "judges labelled the item too (`sources` lists every source)."
)


def label_mix(sources) -> str:
    """Whose labels made a row, from its sources: the rule LABEL_SOURCES_RULE states."""
    people, judges = "human" in sources, "judge" in sources
    if people and judges:
        return "both"
    return "human" if people else "judge" if judges else "imported"


# Every non-empty combination of sources, as `sources` joins it, and its mix.
_MIXES = {
    ",".join(c): label_mix(c)
    for c in ([s for k, s in enumerate(SOURCE_NAMES) if code >> k & 1] for code in range(1, 8))
}
_MIX_KEYS, _MIX_VALUES = pa.array(list(_MIXES)), pa.array(list(_MIXES.values()))


def label_sources(sources: pa.Array) -> pa.Array:
    """The `label_sources` column from the `sources` column (sorted lists of source names)."""
    return _MIX_VALUES.take(pc.index_in(pc.binary_join(sources, ","), value_set=_MIX_KEYS))


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

    def item_columns_of(self, rows) -> dict[str, list]:
        """Each item's split_key, metadata (canonical JSON) and flattened metadata columns
        (every format's), from a table's external_id, prompt (the text, a chat prompt's JSON),
        chat and metadata (the database's JSON text) columns: one row per item."""
        col, loads = rows.column, orjson.loads
        metadata = [metadata_json(text) for text in col("metadata").to_pylist()]
        if self.split_path is None:
            texts, chats = col("prompt").to_pylist(), col("chat").to_pylist()
            keys = [prompt_key(loads(t) if c else t) for t, c in zip(texts, chats, strict=True)]
        else:
            ids = col("external_id").to_pylist()
            keys = [self.split_key(e, "", m) for e, (m, _) in zip(ids, metadata, strict=True)]
        columns = {"split_key": keys, "metadata": [text for _, text in metadata]}
        if self.metadata.names:
            flat = [self.metadata.values(m) for m, _ in metadata]
            columns.update({name: [f[name] for f in flat] for name, _ in self.metadata.fields()})
        return columns

    def prompt_type(self) -> pa.DataType:
        return MESSAGES if self.chat else pa.string()

    def prompts(self, texts: pa.Array, chat: pa.Array) -> pa.Array:
        """The prompt column from the prompts' text (a chat prompt's: its JSON): in a chat
        export, every prompt as messages (a text prompt as one user message)."""
        if not self.chat:
            return texts
        prompts = [
            as_messages(orjson.loads(text) if is_chat else text)
            for text, is_chat in zip(texts.to_pylist(), chat.to_pylist(), strict=True)
        ]
        return pa.array(prompts, MESSAGES)

    def completions(self, texts: pa.Array) -> pa.Array:
        """Responses' texts, or in a chat export each as one assistant message."""
        if not self.chat:
            return texts
        roles = pa.repeat(pa.scalar("assistant"), len(texts))
        messages = pa.StructArray.from_arrays([roles, texts], fields=list(MESSAGE))
        return pa.ListArray.from_arrays(pa.array(range(len(texts) + 1), pa.int32()), messages)

    def fields(self) -> list[tuple[str, pa.DataType]]:
        raise NotImplementedError

    def output_fields(self) -> list[tuple[str, pa.DataType]]:
        return self.fields() + PROVENANCE_FIELDS + self.metadata.fields()

    def schema(self) -> pa.Schema:
        return pa.schema(self.output_fields(), metadata={"prefhub.format": self.format})

    def batch_schema(self) -> pa.Schema:
        """The schema of convert()'s tables: the output columns and the internal ones."""
        return pa.schema(self.output_fields() + INTERNAL_FIELDS + self.internal_fields)

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


# Exporters that aggregate an item's labels in Python ----------------------------------------

RESPONSE = pa.struct([("id", pa.string()), ("text", pa.string()), ("model", pa.string())])
LABEL_ROWS = pa.schema(
    [("item_id", pa.int64()), ("external_id", pa.string()), ("prompt", pa.string())]
    + [("chat", pa.bool_()), ("responses", pa.string()), ("metadata", pa.string())]
    + [("label", pa.string())]
    + [(name, pa.string()) for name in ("source", "annotator", "judge")]
)


def list_parts(lists: pa.Array) -> tuple[pa.Array, pa.Array]:
    """A list array's offsets (from 0) and its values, flat."""
    offsets = lists.offsets
    return pc.subtract(offsets, offsets[0]), pc.list_flatten(lists)


def split_lists(values: list, offsets: list[int]) -> list[list]:
    return [values[a:b] for a, b in zip(offsets, offsets[1:], strict=False)]


def json_column(texts: pa.Array, kind: pa.DataType) -> pa.Array:
    """JSON texts parsed by Arrow (C++) into values of type `kind`; fields not in it ignored."""
    lines = pc.binary_join_element_wise('{"v":', texts, "}\n", "")
    data = lines.buffers()[2].slice(0, pc.sum(pc.binary_length(lines)).as_py() or 0)
    options = pajson.ParseOptions(
        explicit_schema=pa.schema([("v", kind)]), unexpected_field_behavior="ignore"
    )
    read = pajson.ReadOptions(block_size=max(data.size, 1 << 20))
    return pajson.read_json(pa.BufferReader(data), read, options).column("v").combine_chunks()


class Items:
    """The complete items of a batch of label rows (one row per label, item by item), column
    by column: the item's own columns (Arrow), its labels parsed (Python), its provenance."""

    def __init__(self, rows: pa.Table):
        item_ids = rows.column("item_id").combine_chunks()
        n = len(item_ids)
        change = pc.not_equal(item_ids.slice(1), item_ids.slice(0, n - 1))
        after = pc.cast(pc.add(pc.indices_nonzero(change), 1), pa.int64())
        starts = pa.concat_arrays([pa.array([0], pa.int64()), after])
        first = rows.take(starts)
        self.count = len(starts)
        self.bounds = starts.to_pylist() + [n]
        self.n_labels = [b - a for a, b in zip(self.bounds, self.bounds[1:], strict=False)]
        self.external_id = first.column("external_id").combine_chunks()
        self.prompt = first.column("prompt").combine_chunks()
        self.chat = first.column("chat").combine_chunks()
        self.first = first
        self.response_offsets, responses = list_parts(
            json_column(first.column("responses").combine_chunks(), pa.list_(RESPONSE))
        )
        self.response_ids = responses.field("id")
        self.response_texts = responses.field("text")
        self.models = pc.fill_null(responses.field("model"), "")
        loads = orjson.loads
        self.labels = split_lists(
            [loads(label) for label in rows.column("label").to_pylist()], self.bounds
        )
        self.sources = self._names(rows.column("source"))
        self.annotators = self._names(rows.column("annotator"))
        self.judges = self._names(rows.column("judge"))

    def _names(self, column: pa.ChunkedArray) -> list[list[str]]:
        """Each item's distinct names, sorted ("" and null left out)."""
        names = column.to_pylist()
        out = []
        for a, b in zip(self.bounds, self.bounds[1:], strict=False):
            if b - a == 1:
                out.append([names[a]] if names[a] else [])
            else:
                out.append(sorted({name for name in names[a:b] if name}))
        return out

    def ids(self) -> list[list[str]]:
        """Each item's response ids."""
        return split_lists(self.response_ids.to_pylist(), self.response_offsets.to_pylist())

    def per_response(self, values: pa.Array) -> pa.Array:
        """A flat column of the items' responses (item by item) as one list per item."""
        return pa.ListArray.from_arrays(self.response_offsets, values)

    def response_at(self, item: pa.Array, index: pa.Array) -> pa.Array:
        """Positions in the flat response columns of the index-th response of each item."""
        return pc.add(pc.take(self.response_offsets, item), pc.cast(index, pa.int64()))


class ItemRows(NamedTuple):
    """What an exporter makes of a batch's items: its own columns for each output row, the
    item each row comes from, and each row's and each item's agreement."""

    columns: dict[str, pa.Array]
    item: pa.Array  # per row, an index into the batch's items
    agreement: list[float | None]  # per row
    item_agreement: list[float | None]  # per item (its first row's, for the filter and card)


def pair_columns(exporter: Exporter, items: Items, item, chosen, rejected) -> dict[str, pa.Array]:
    """pair_fields' columns of pairs of responses, given by their index in their item."""
    item = pa.array(item, pa.int64())
    chosen = items.response_at(item, pa.array(chosen, pa.int64()))
    rejected = items.response_at(item, pa.array(rejected, pa.int64()))
    texts, ids = items.response_texts, items.response_ids
    return {
        "chosen": exporter.completions(texts.take(chosen)),
        "rejected": exporter.completions(texts.take(rejected)),
        "chosen_id": ids.take(chosen),
        "rejected_id": ids.take(rejected),
        "chosen_model": items.models.take(chosen),
        "rejected_model": items.models.take(rejected),
    }


class LabelsExporter(Exporter):
    """Reads one row per label (item by item); its subclass aggregates each item's labels in
    item_rows(), the columns common to every format (prompt, provenance) are made here."""

    page_items = 2_500  # peak RSS at 1M rows: see bench/README.md

    def prepare(self, project: Project, filters: dict) -> None:
        self._pending: pa.Table | None = None  # the last item's labels: may go on

    def query(self, project: Project, filters: dict):
        names = ["item_id", "item__external_id", "prompt_text", "item__chat", "responses_json"]
        names += ["metadata_json", "label_json", "source", "annotator__username", "judge__name"]

        def page(low: int, high: int):
            labels = labels_of(project, filters).filter(item_id__gte=low, item_id__lt=high)
            labels = labels.annotate(
                prompt_text=JSONRoot("item__prompt"),
                responses_json=json_text("item__responses"),
                metadata_json=json_text("item__metadata"),
                label_json=json_text("label"),
            )
            return labels.order_by("item_id", "id").values_list(*names)

        return page, LABEL_ROWS

    def item_rows(self, items: Items) -> ItemRows:
        """The output rows of a batch's items, each with at least one label. Counts of what is
        left out go to `stats` here; counts of what is exported in count()."""
        raise NotImplementedError

    def convert(self, batch: pa.RecordBatch) -> pa.Table | None:
        rows = pa.Table.from_batches([batch])
        if self._pending is not None:
            rows = pa.concat_tables([self._pending, rows])
        # The last item's labels may go on in the next batch: held back.
        last = pc.index(rows.column("item_id"), rows.column("item_id")[-1]).as_py()
        self._pending = rows.slice(last)
        return self._table(rows.slice(0, last))

    def finish(self) -> pa.Table | None:
        pending, self._pending = self._pending, None
        return self._table(pending) if pending is not None else None

    def _table(self, rows: pa.Table) -> pa.Table | None:
        if not rows.num_rows:
            return None
        items = Items(rows)
        self.stats["items"] += items.count
        self.stats["labels"] += rows.num_rows
        for entry in pc.value_counts(rows.column("source")).to_pylist():
            self.stats["sources." + entry["values"]] += entry["counts"]
        made = self.item_rows(items)
        if not len(made.item):
            return None
        item = made.item
        first = pc.not_equal(item, pa.concat_arrays([pa.array([-1], pa.int64()), item[:-1]]))
        sources = pa.array(items.sources, NAMES).take(item)
        common = {
            "prompt": self.prompts(items.prompt, items.chat).take(item),
            "external_id": items.external_id.take(item),
            "n_labels": pa.array(items.n_labels, pa.int32()).take(item),
            "agreement": rounded(made.agreement),
            "sources": sources,
            "label_sources": label_sources(sources),
            "annotators": pa.array(items.annotators, NAMES).take(item),
            "judges": pa.array(items.judges, NAMES).take(item),
            "_agreement": rounded(made.item_agreement).take(item),
            "_first": first,
        }
        schema = self.batch_schema()
        for name, values in self.item_columns_of(items.first).items():
            common[name] = pa.array(values, schema.field(name).type).take(item)
        columns = {**common, **made.columns}
        return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def rounded(values: list[float | None]) -> pa.Array:
    """Python's round(value, 6) of each value (None: null): Arrow finds the values with more
    decimals than that (few: scores and means are mostly whole or halves), Python rounds them."""
    array = pa.array(values, pa.float64())
    inexact = pc.fill_null(pc.not_equal(pc.round(array, 6), array), False)
    if not pc.any(inexact).as_py():
        return array
    fixed = list(values)
    for k in pc.indices_nonzero(inexact).to_pylist():
        fixed[k] = round(values[k], 6)
    return pa.array(fixed, pa.float64())
