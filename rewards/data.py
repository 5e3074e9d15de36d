"""Dataset-version rows → tokenized examples, batches and the length-grouped sampler.

Rows are the JSONL exports of feedback_api/datasets/exporters: pairwise (`prompt`, `chosen`,
`rejected`, optional `margin`), listwise (`prompt`, `responses`, `ranking`: indices best first,
a tied group as a list of indices), spans
(`prompt`, `response`, `spans` with code-point offsets) and ratings (`prompt`, `completions` with
`response` and per-aspect `ratings`). `check_rows` validates them without a tokenizer so that
bad data fails before any model loads.

Every sequence is (prompt, response) encoded the way the tokenizer encodes a pair of texts
([CLS] prompt [SEP] response [SEP] for BERT). Over max_length the PROMPT is cut, from its
middle: its beginning and its end stay (instructions, or a question before retrieved passages;
the last turn, or a question after them), and the response is kept, because the answers of a
pair or a list often differ only in the last turn. Each example records what was cut
(`Example.cut`; `truncation_report` sums it up for the run log).
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotate.kinds import KindError, objective_kind
from annotate.kinds.base import check_text
from annotate.kinds.spans import span_classes as taxonomy_classes
from annotate.splits import in_test_splits, prompt_key

IGNORE = -100  # label of tokens the span loss skips (prompt, special tokens, padding)


class DataError(ValueError):
    """Training data that cannot train (empty, wrong shape, unknown span label)."""


# Reading and checking ------------------------------------------------------------------------


def read_rows(path: Path | str) -> list[dict[str, Any]]:
    """The rows of a JSONL file (gzip when it ends in .gz); DataError on a malformed line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path.name} line {number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path.name} line {number}: expected an object")
            rows.append(row)
    return rows


def check_rows(
    rows: list[dict],
    objective: str,
    *,
    name: str = "data",
    taxonomy: list[dict] | None = None,
    aspects: list[str] | None = None,
) -> None:
    """Raise DataError on the first row that the objective cannot train on (the rule of its
    Kind: annotate.kinds, check_training_row)."""
    if not rows:
        raise DataError(f"{name}: no rows")
    try:
        kind = objective_kind(objective)
        for number, row in enumerate(rows, 1):
            where = f"{name} row {number}"
            check_text(row.get("prompt"), f"{where}: prompt", chat=True)
            kind.check_training_row(row, where, taxonomy=taxonomy, aspects=aspects)
    except KindError as exc:
        raise DataError(str(exc)) from None


def span_classes(taxonomy: list[dict] | None) -> dict[str, str]:
    """Span label → its reward category, from the project's taxonomy."""
    try:
        return taxonomy_classes(taxonomy)
    except KindError as exc:
        raise DataError(str(exc)) from None


def categories(taxonomy: list[dict]) -> list[str]:
    """The token classes of a spans model: "ok" then each category in taxonomy order."""
    found = ["ok"]
    for category in span_classes(taxonomy).values():
        if category not in found:
            found.append(category)
    return found


def rating_aspects(rows: list[dict], aspects: list[str] | None) -> list[str]:
    """The aspects to regress: those given, else those of the rows in first-seen order."""
    if aspects:
        return list(aspects)
    found: list[str] = []
    for row in rows:
        for completion in row["completions"]:
            found += [a for a in completion["ratings"] if a not in found]
    if not found:
        raise DataError("ratings: no aspect has a score")
    return found


def split_rows(rows: list[dict], share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out about `share` of the rows by the export's split rule (one rule, in
    feedback_api.datasets.selection): each row's group key is its `split_key` (what the version
    was split by: the prompt's hash or a metadata field), or for rows without one the prompt's
    content hash; no group is on both sides. With few groups, one group is held out when
    there are two or more, none when there is one."""
    if share <= 0:
        return rows, []
    keys = [row.get("split_key") or prompt_key(row["prompt"]) for row in rows]
    held = in_test_splits(keys, seed=seed, fraction=share, both_sides=True)
    train = [r for r, h in zip(rows, held, strict=True) if not h]
    if not train:  # one group only: it trains, nothing is held out
        return rows, []
    return train, [r for r, h in zip(rows, held, strict=True) if h]


# Text and encoding ---------------------------------------------------------------------------


def as_text(value: str | list[dict]) -> str:
    """A prompt or response as text; chat messages become "role: content" lines."""
    if isinstance(value, str):
        return value
    if len(value) == 1 and value[0].get("role") == "assistant":
        return value[0]["content"]
    return "\n".join(f"{m.get('role', 'user')}: {m['content']}" for m in value)


class Encoder:
    """Encodes (prompt, response) pairs like the tokenizer's pair template, cutting the middle
    of the prompt (half of what is kept from its start, half from its end) and, only when the
    response alone is too long, the response's end."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._learn_template()
        budget = max_length - len(self.prefix) - len(self.middle) - len(self.suffix)
        if budget < 4:
            raise DataError(f"max_length {max_length} leaves no room for text")
        self.budget = budget
        # A long response still leaves a quarter of the budget to the end of the prompt.
        self.min_prompt = budget // 4

    def _learn_template(self) -> None:
        tok = self.tokenizer
        a = tok("hello", add_special_tokens=False)["input_ids"]
        b = tok("world", add_special_tokens=False)["input_ids"]
        pair = tok("hello", "world", return_token_type_ids=True)
        ids = pair["input_ids"]
        i = _find(ids, a, 0)
        j = _find(ids, b, i + len(a))
        self.prefix, self.middle, self.suffix = ids[:i], ids[i + len(a) : j], ids[j + len(b) :]
        types = pair.get("token_type_ids")
        self.types = (types[0], types[-1]) if types and any(types) else None

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text without special tokens, batched (no truncation)."""
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]

    def budgets(self, n_prompt: int, n_response: int) -> tuple[int, int]:
        """Tokens kept of the prompt (its start and end) and of the response (its start)."""
        keep_response = min(n_response, self.budget - min(n_prompt, self.min_prompt))
        return min(n_prompt, self.budget - keep_response), keep_response

    def dropped(self, n_prompt: int, n_response: int) -> tuple[int, int]:
        """Tokens cut from the prompt and from the response of one sequence."""
        keep_prompt, keep_response = self.budgets(n_prompt, n_response)
        return n_prompt - keep_prompt, n_response - keep_response

    def pair(self, prompt: list[int], response: list[int]) -> tuple[list[int], list[int] | None]:
        """input_ids and token_type_ids (None when the model has none) of one sequence."""
        n_prompt, n_response = self.budgets(len(prompt), len(response))
        head = self.prefix + _middle_cut(prompt, n_prompt) + self.middle
        tail = response[:n_response] + self.suffix
        types = None
        if self.types:
            types = [self.types[0]] * len(head) + [self.types[1]] * len(tail)
        return head + tail, types

    def response_start(self, prompt_len: int, response_len: int) -> int:
        """Index of the response's first token in the encoded sequence."""
        n_prompt, _ = self.budgets(prompt_len, response_len)
        return len(self.prefix) + n_prompt + len(self.middle)


def _middle_cut(ids: list[int], keep: int) -> list[int]:
    """`keep` tokens of `ids`: the first half of them from its start, the rest from its end."""
    if keep >= len(ids):
        return ids
    start = keep // 2
    return ids[:start] + ids[len(ids) - (keep - start) :]


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    for i in range(start, len(haystack) - len(needle) + 1):
        if haystack[i : i + len(needle)] == needle:
            return i
    raise DataError("cannot find the tokenizer's pair template")


def span_token_labels(
    offsets: list[tuple[int, int]], spans: list[dict], classes: dict[str, int]
) -> list[int]:
    """One class per response token from character spans (code points, Python str indices).

    A token takes the class of the span it overlaps most (0 = "ok"); `classes` maps a span's
    category to its class index. Offsets are the fast tokenizer's offset_mapping, which counts
    code points like Python does.
    """
    labels = []
    for start, end in offsets:
        best, overlap = 0, 0
        for span in spans:
            shared = min(end, span["end"]) - max(start, span["start"])
            if shared > overlap:
                best, overlap = classes[span["category"]], shared
        labels.append(best)
    return labels


@dataclass
class Example:
    """One training example: its sequences and what the loss needs of them."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    target: Any = None  # margin | ranked groups | token labels | (values, mask)
    cut: tuple[int, int] = (0, 0)  # most tokens cut from a sequence's prompt, and response

    def note_cut(self, encoder: Encoder, n_prompt: int, n_response: int) -> None:
        """Record what the encoder cut of one of this example's sequences."""
        prompt, response = encoder.dropped(n_prompt, n_response)
        self.cut = (max(self.cut[0], prompt), max(self.cut[1], response))

    @property
    def length(self) -> int:
        return max(len(ids) for ids in self.input_ids)

    @property
    def tokens(self) -> int:
        return sum(len(ids) for ids in self.input_ids)


def truncation_report(examples: list[Example]) -> dict[str, Any]:
    """How many examples lost tokens to max_length, and how many: prompt tokens cut (mean and
    max over the examples cut) and responses cut (the count, and the most tokens one lost)."""
    prompts = [e.cut[0] for e in examples if e.cut[0]]
    responses = [e.cut[1] for e in examples if e.cut[1]]
    return {
        "rows": len(examples),
        "truncated": sum(1 for e in examples if any(e.cut)),
        "prompt_tokens_cut": {
            "rows": len(prompts),
            "mean": round(sum(prompts) / len(prompts), 1) if prompts else 0.0,
            "max": max(prompts, default=0),
        },
        "response_tokens_cut": {"rows": len(responses), "max": max(responses, default=0)},
    }


def encode_rows(
    rows: list[dict],
    objective: str,
    encoder: Encoder,
    *,
    taxonomy: list[dict] | None = None,
    aspects: list[str] | None = None,
) -> list[Example]:
    """Tokenize checked rows into examples (see check_rows); one batched tokenizer call per
    column of texts. The objective's own (rewards.objectives: imports torch)."""
    from .objectives import get_objective

    return get_objective(objective).encode(rows, encoder, taxonomy, aspects)


# Batching ------------------------------------------------------------------------------------


class LengthGroupedSampler:
    """Shuffled indices where each run of `batch_size` has similar lengths: shuffle, cut into
    mega-batches of `batch_size * group` examples, sort each by length (longest first). Less
    padding than random batches, still random across mega-batches; deterministic per
    (seed, epoch) so a resumed run skips the same batches it already trained on."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group: int = 50):
        self.lengths, self.batch_size, self.seed, self.group = lengths, batch_size, seed, group
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        order = list(range(len(self.lengths)))
        random.Random(self.seed * 1000003 + self.epoch).shuffle(order)
        mega = self.batch_size * self.group
        for at in range(0, len(order), mega):
            yield from sorted(order[at : at + mega], key=lambda i: -self.lengths[i])


def pad(sequences: list[list[int]], value: int, multiple: int = 1) -> list[list[int]]:
    """Right-pad to the longest sequence (rounded up to `multiple`)."""
    width = max(len(s) for s in sequences)
    width = -(-width // multiple) * multiple
    return [s + [value] * (width - len(s)) for s in sequences]
