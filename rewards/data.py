"""Dataset-version rows → tokenized examples, batches and the length-grouped sampler.

Rows are the JSONL exports of feedback_api/datasets/exporters: pairwise (`prompt`, `chosen`,
`rejected`, optional `margin`), listwise (`prompt`, `responses`, `ranking` best first), spans
(`prompt`, `response`, `spans` with code-point offsets) and ratings (`prompt`, `completions` with
`response` and per-aspect `ratings`). `check_rows` validates them without a tokenizer so that
bad data fails before any model loads.

Every sequence is (prompt, response) encoded the way the tokenizer encodes a pair of texts
([CLS] prompt [SEP] response [SEP] for BERT); the prompt is cut from the LEFT and the response
kept, because the two answers of a pair often differ only in the last turn.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """Raise DataError on the first row that the objective cannot train on."""
    if not rows:
        raise DataError(f"{name}: no rows")
    for number, row in enumerate(rows, 1):
        where = f"{name} row {number}"
        _check_text(row.get("prompt"), f"{where}: prompt", chat=True)
        if objective == "pairwise":
            _check_pairwise(row, where)
        elif objective == "listwise":
            _check_listwise(row, where)
        elif objective == "spans":
            _check_spans(row, where, span_classes(taxonomy))
        elif objective == "ratings":
            _check_ratings(row, where, aspects)


def _check_text(value: Any, where: str, *, chat: bool = False) -> None:
    if isinstance(value, str):
        return
    messages = chat and isinstance(value, list) and value
    if messages and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value):
        return
    raise DataError(f"{where}: expected a string or a list of chat messages")


def _check_pairwise(row: dict, where: str) -> None:
    for key in ("chosen", "rejected"):
        if key not in row:
            raise DataError(f"{where}: missing {key!r} (is this a pairwise export?)")
        _check_text(row[key], f"{where}: {key}", chat=True)
    margin = row.get("margin")
    if margin is not None and not isinstance(margin, int | float):
        raise DataError(f"{where}: margin must be a number, got {margin!r}")


def _check_listwise(row: dict, where: str) -> None:
    responses, ranking = row.get("responses"), row.get("ranking")
    if not isinstance(responses, list) or len(responses) < 2:
        raise DataError(f"{where}: responses must be a list of at least 2 (a listwise export?)")
    for i, response in enumerate(responses):
        _check_text(response, f"{where}: responses[{i}]")
    if not isinstance(ranking, list) or sorted(ranking) != list(range(len(responses))):
        raise DataError(f"{where}: ranking must order every response index once, best first")


def _check_spans(row: dict, where: str, classes: dict[str, str]) -> None:
    response, spans = row.get("response"), row.get("spans")
    if not isinstance(response, str) or not isinstance(spans, list):
        raise DataError(f"{where}: expected `response` and `spans` (is this a spans export?)")
    for i, span in enumerate(spans):
        if not isinstance(span, dict):
            raise DataError(f"{where}: spans[{i}] must be an object")
        start, end, label = span.get("start"), span.get("end"), span.get("label")
        if label not in classes:
            known = ", ".join(sorted(classes))
            raise DataError(f"{where}: span label {label!r} is not in the taxonomy ({known})")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end):
            raise DataError(f"{where}: spans[{i}] needs integer 0 <= start < end")
        if end > len(response):
            raise DataError(f"{where}: spans[{i}] ends at {end}, past the response's end")


def _check_ratings(row: dict, where: str, aspects: list[str] | None) -> None:
    completions = row.get("completions")
    if not isinstance(completions, list) or not completions:
        raise DataError(f"{where}: expected `completions` (is this a ratings export?)")
    for i, completion in enumerate(completions):
        if not isinstance(completion, dict) or not isinstance(completion.get("response"), str):
            raise DataError(f"{where}: completions[{i}] needs a `response` string")
        ratings = completion.get("ratings")
        if not isinstance(ratings, dict):
            raise DataError(f"{where}: completions[{i}] needs `ratings`")
        for aspect, value in ratings.items():
            if aspects is not None and aspect not in aspects:
                raise DataError(f"{where}: aspect {aspect!r} is not one of {aspects}")
            if value is not None and not isinstance(value, int | float):
                raise DataError(f"{where}: rating {aspect!r} must be a number, got {value!r}")


def span_classes(taxonomy: list[dict] | None) -> dict[str, str]:
    """Span label → its reward category, from the project's taxonomy."""
    if not taxonomy:
        raise DataError("spans: the project's taxonomy is needed (name, category per error type)")
    return {t["name"]: t.get("category") or t["name"] for t in taxonomy}


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
    """Hold out about `share` of the rows, by prompt (no prompt on both sides), seeded."""
    if share <= 0:
        return rows, []

    def held(row: dict) -> bool:
        key = f"{seed}:{json.dumps(row.get('prompt'), sort_keys=True)}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64 < share

    train = [r for r in rows if not held(r)]
    held_out = [r for r in rows if held(r)]
    if not train or not held_out:  # tiny sets: fall back to a row split
        cut = max(1, round(len(rows) * share))
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        return shuffled[cut:], shuffled[:cut]
    return train, held_out


# Text and encoding ---------------------------------------------------------------------------


def as_text(value: str | list[dict]) -> str:
    """A prompt or response as text; chat messages become "role: content" lines."""
    if isinstance(value, str):
        return value
    if len(value) == 1 and value[0].get("role") == "assistant":
        return value[0]["content"]
    return "\n".join(f"{m.get('role', 'user')}: {m['content']}" for m in value)


class Encoder:
    """Encodes (prompt, response) pairs like the tokenizer's pair template, truncating the
    prompt from the left and, only when the response alone is too long, the response's end."""

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
        """Tokens kept of the prompt (its end) and of the response (its start)."""
        keep_response = min(n_response, self.budget - min(n_prompt, self.min_prompt))
        return min(n_prompt, self.budget - keep_response), keep_response

    def pair(self, prompt: list[int], response: list[int]) -> tuple[list[int], list[int] | None]:
        """input_ids and token_type_ids (None when the model has none) of one sequence."""
        n_prompt, n_response = self.budgets(len(prompt), len(response))
        head = self.prefix + (prompt[len(prompt) - n_prompt :] if n_prompt else []) + self.middle
        tail = response[:n_response] + self.suffix
        types = None
        if self.types:
            types = [self.types[0]] * len(head) + [self.types[1]] * len(tail)
        return head + tail, types

    def response_start(self, prompt_len: int, response_len: int) -> int:
        """Index of the response's first token in the encoded sequence."""
        n_prompt, _ = self.budgets(prompt_len, response_len)
        return len(self.prefix) + n_prompt + len(self.middle)


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
    target: Any = None  # margin | ranking | token labels | (values, mask)

    @property
    def length(self) -> int:
        return max(len(ids) for ids in self.input_ids)

    @property
    def tokens(self) -> int:
        return sum(len(ids) for ids in self.input_ids)


def encode_rows(
    rows: list[dict],
    objective: str,
    encoder: Encoder,
    *,
    taxonomy: list[dict] | None = None,
    aspects: list[str] | None = None,
) -> list[Example]:
    """Tokenize checked rows into examples (see check_rows); one batched tokenizer call per
    column of texts."""
    if objective == "pairwise":
        return _encode_pairwise(rows, encoder)
    if objective == "listwise":
        return _encode_listwise(rows, encoder)
    if objective == "spans":
        return _encode_spans(rows, encoder, taxonomy or [])
    return _encode_ratings(rows, encoder, aspects or [])


def _prompts(rows: list[dict], encoder: Encoder) -> list[list[int]]:
    texts = [as_text(r["prompt"]) for r in rows]
    unique = list(dict.fromkeys(texts))
    ids = dict(zip(unique, encoder.tokenize(unique), strict=True))
    return [ids[t] for t in texts]


def _sequences(encoder: Encoder, prompts: list, responses: list) -> tuple[list, list | None]:
    pairs = [encoder.pair(p, r) for p, r in zip(prompts, responses, strict=True)]
    ids = [p[0] for p in pairs]
    return ids, ([p[1] for p in pairs] if encoder.types else None)


def _encode_pairwise(rows: list[dict], encoder: Encoder) -> list[Example]:
    prompts = _prompts(rows, encoder)
    chosen = encoder.tokenize([as_text(r["chosen"]) for r in rows])
    rejected = encoder.tokenize([as_text(r["rejected"]) for r in rows])
    examples = []
    for row, p, c, r in zip(rows, prompts, chosen, rejected, strict=True):
        ids, types = _sequences(encoder, [p, p], [c, r])
        examples.append(Example(ids, types, float(row.get("margin") or 0.0)))
    return examples


def _encode_listwise(rows: list[dict], encoder: Encoder) -> list[Example]:
    prompts = _prompts(rows, encoder)
    flat = encoder.tokenize([text for r in rows for text in r["responses"]])
    examples, at = [], 0
    for row, p in zip(rows, prompts, strict=True):
        responses = flat[at : at + len(row["responses"])]
        at += len(responses)
        ids, types = _sequences(encoder, [p] * len(responses), responses)
        examples.append(Example(ids, types, list(row["ranking"])))
    return examples


def _encode_spans(rows: list[dict], encoder: Encoder, taxonomy: list[dict]) -> list[Example]:
    to_category = span_classes(taxonomy)
    classes = {c: i for i, c in enumerate(categories(taxonomy))}
    prompts = _prompts(rows, encoder)
    texts = [r["response"] for r in rows]
    encoded = encoder.tokenizer(
        texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False
    )
    examples = []
    for i, (row, p) in enumerate(zip(rows, prompts, strict=True)):
        response, offsets = encoded["input_ids"][i], encoded["offset_mapping"][i]
        spans = [{**s, "category": to_category[s["label"]]} for s in row["spans"]]
        token_labels = span_token_labels(offsets, spans, classes)
        ids, types = encoder.pair(p, response)
        start = encoder.response_start(len(p), len(response))
        labels = [IGNORE] * len(ids)
        kept = token_labels[: len(ids) - start - len(encoder.suffix)]
        labels[start : start + len(kept)] = kept
        examples.append(Example([ids], [types] if types else None, labels))
    return examples


def _encode_ratings(rows: list[dict], encoder: Encoder, aspects: list[str]) -> list[Example]:
    flat = [(row, c) for row in rows for c in row["completions"]]
    prompts = _prompts([row for row, _ in flat], encoder)
    responses = encoder.tokenize([c["response"] for _, c in flat])
    examples = []
    for (_, completion), p, r in zip(flat, prompts, responses, strict=True):
        ids, types = encoder.pair(p, r)
        values = [completion["ratings"].get(a) for a in aspects]
        if all(v is None for v in values):
            continue
        target = ([v or 0.0 for v in values], [v is not None for v in values])
        examples.append(Example([ids], [types] if types else None, target))
    return examples


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
