"""What every exporter provides: the rows of one item, their Arrow schema, and counts for the card.

An exporter turns one item and its (already filtered) labels into zero or more output rows.
Several labels of one item are aggregated into one answer (see aggregate.py) and every row keeps
the item's provenance: external_id, how many labels, their agreement, sources, annotators, judges.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar, NamedTuple, Protocol

import pyarrow as pa

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)


class ExportError(Exception):
    """An export that cannot be built; `permanent` says whether a retry could help."""

    def __init__(self, message: str, *, permanent: bool = True):
        super().__init__(message)
        self.permanent = permanent


class ItemRecord(NamedTuple):
    id: int
    external_id: str
    prompt: str | list[dict]
    responses: list[dict]


class LabelRecord(NamedTuple):
    id: int
    source: str
    annotator: str  # username, "" for judge and anonymous imported labels
    judge: str  # judge name, "" for the rest
    label: dict


PROVENANCE_FIELDS = [
    ("external_id", pa.string()),
    ("n_labels", pa.int32()),
    ("agreement", pa.float64()),
    ("sources", pa.list_(pa.string())),
    ("annotators", pa.list_(pa.string())),
    ("judges", pa.list_(pa.string())),
]


def provenance(item: ItemRecord, labels: list[LabelRecord], agreement: float) -> dict[str, Any]:
    return {
        "external_id": item.external_id,
        "n_labels": len(labels),
        "agreement": round(agreement, 6),
        "sources": sorted({lb.source for lb in labels}),
        "annotators": sorted({lb.annotator for lb in labels if lb.annotator}),
        "judges": sorted({lb.judge for lb in labels if lb.judge}),
    }


def as_messages(prompt: str | list[dict]) -> list[dict]:
    """A prompt as chat messages: text becomes one user message."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def prompt_text(prompt: str | list[dict]) -> str:
    """A chat prompt flattened for text-only formats: the messages' contents, one per line."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)


class LabelSource(Protocol):
    """What prepare() may ask of the filtered labels of the items that would be exported."""

    def majority_without_strength(self, min_agreement: float) -> bool:
        """Whether an item that gives a pairwise row (a majority for A or B, its share at
        least min_agreement) has no strength in any of its majority's labels."""


class Exporter:
    """Base class: subclasses set `format`, `kind`, `aggregation` and implement fields() and rows().

    `chat` is true when any exported item has a chat prompt: the prompt column is then a message
    list in every row (text prompts become one user message), so that the schema is one type.
    """

    format: ClassVar[str]
    kind: ClassVar[str]  # the project kind whose labels it reads
    aggregation: ClassVar[str]  # one paragraph for the dataset card

    def __init__(self, *, config: dict, chat: bool = False, seed: int = 0):
        self.config = config
        self.chat = chat
        self.seed = seed
        self.stats: Counter[str] = Counter()

    def prompt(self, item: ItemRecord):
        return as_messages(item.prompt) if self.chat else item.prompt

    def prompt_type(self) -> pa.DataType:
        return MESSAGES if self.chat else pa.string()

    def fields(self) -> list[tuple[str, pa.DataType]]:
        raise NotImplementedError

    def schema(self) -> pa.Schema:
        return pa.schema(
            self.fields() + PROVENANCE_FIELDS, metadata={"prefhub.format": self.format}
        )

    def prepare(self, labels: LabelSource, min_agreement: float) -> None:
        """Called before schema(): an exporter whose columns depend on the data reads the
        labels here first."""

    def rows(self, item: ItemRecord, labels: list[LabelRecord]) -> list[dict[str, Any]]:
        """The output rows of one item with at least one label; each has an `agreement`.
        Counts of what is left out go to `stats` here; counts of what is exported go in count()."""
        raise NotImplementedError

    def count(self, item: ItemRecord, rows: list[dict[str, Any]]) -> None:
        """Count the rows of an item in `stats` once exported (past the min_agreement filter)."""
