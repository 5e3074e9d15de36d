"""Reading items out of uploaded files: JSONL, JSON arrays and CSV, streamed record by record.

Every reader yields (line number, record or RowError) so that a bad row is reported where it is
and the rest of the file is still read. Records are turned into items by `parse_record`, which
knows our own shape, TRL's explicit and implicit-prompt preference shapes and chat prompts.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import orjson

from . import storable
from .kinds import KindError, clean_item, get_kind
from .kinds.base import clean_message, type_name
from .storable import MAX_JSON_DEPTH, TOO_DEEP, json_problem, printable, text_problem

FORMATS = ("jsonl", "json", "csv")
MAX_REPORTED_ERRORS = 1000
MAX_RECORD_CHARS = 10 * 1024 * 1024
CHUNK = 1 << 16
# 19 digits or more: the only integers orjson may read as floats (64 bits hold 19 or 20).
# Found as one substring test on the line with every digit mapped to "0" and the rest to " ":
# the regex \d{19} cost 16 µs a 1.7 KB line, 2.5 s of a 100,000-item import's 11.
_DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_NUMBER = b"0" * 19
OWN_KEYS = {"external_id", "id", "prompt", "responses", "metadata", "priority", "gold", "label"}
# The optional per-side fields of a TRL row: the source's response ids and model names.
TRL_SIDE_KEYS = {"chosen_id", "rejected_id", "chosen_model", "rejected_model"}
TRL_KEYS = {"external_id", "id", "prompt", "chosen", "rejected", "metadata", *TRL_SIDE_KEYS}


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


@dataclass
class ImportReport:
    """What an import did; `errors` holds the first MAX_REPORTED_ERRORS bad rows."""

    rows: int = 0
    created: int = 0
    duplicates: int = 0
    invalid: int = 0
    labels: int = 0
    # Labels of rows whose item was already there (from before, or earlier in the file), not
    # kept: without labels_for_existing; equal to an imported label the item has; or the item
    # holds other responses than the row (the label would name the wrong ones).
    labels_skipped_existing: int = 0
    labels_already_there: int = 0
    labels_other_responses: int = 0
    fatal: str = ""
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.fatal and not self.invalid

    def add_error(self, error: RowError) -> None:
        self.invalid += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)

    def summary(self) -> str:
        if self.fatal:
            return f"Nothing imported: {self.fatal}"
        parts = [f"{self.created} items imported", f"{self.duplicates} already there (skipped)"]
        if self.labels:
            parts.append(f"{self.labels} labels kept")
        if self.labels_skipped_existing:
            parts.append(
                f"{self.labels_skipped_existing} labels of items already there not kept "
                "(labels_for_existing adds them)"
            )
        if self.labels_already_there:
            parts.append(f"{self.labels_already_there} labels already there (skipped)")
        if self.labels_other_responses:
            parts.append(
                f"{self.labels_other_responses} labels not kept: their item is already there "
                "with other responses"
            )
        if self.invalid:
            parts.append(f"{self.invalid} invalid rows")
        return ", ".join(parts) + "."

    def to_dict(self) -> dict:
        data = asdict(self)
        data["errors"] = [asdict(e) for e in self.errors]
        data["summary"] = self.summary()
        data["ok"] = self.ok
        return data


class FileRejected(Exception):
    """The whole file cannot be imported (too large, wrong format, not UTF-8)."""


@dataclass(frozen=True)
class ParsedItem:
    external_id: str
    prompt: Any
    responses: list
    metadata: dict
    priority: int = 0
    gold_label: dict | None = None
    label: dict | None = None


class CountingReader(io.RawIOBase):
    """Wraps a binary file: counts bytes read and stops past a size limit."""

    def __init__(self, raw: IO[bytes], limit: int):
        self.raw, self.limit, self.count = raw, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise FileRejected(f"the file is over the size limit of {human_bytes(self.limit)}")
        buffer[: len(data)] = data
        return len(data)


def human_bytes(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def detect_format(filename: str, head: bytes) -> str:
    name = filename.lower().removesuffix(".txt")
    for fmt in FORMATS:
        if name.endswith("." + fmt):
            return fmt
    if name.endswith(".ndjson"):
        return "jsonl"
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first == b"[":
        return "json"
    if first == b"{":
        return "jsonl"
    return "csv"


def read_records(stream: IO[bytes], fmt: str) -> Iterator[tuple[int, dict | RowError]]:
    readers = {"jsonl": _read_jsonl, "json": _read_json_array, "csv": _read_csv}
    if fmt not in readers:
        raise FileRejected(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    return readers[fmt](stream)


def _read_jsonl(stream: IO[bytes]) -> Iterator[tuple[int, dict | RowError]]:
    for number, raw in enumerate(stream, start=1):
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
            if _LONG_NUMBER in raw.translate(_DIGITS_ONLY):
                # orjson reads an integer past 64 bits as a float, silently: read the row
                # again exactly, for the row check to refuse such a number by name.
                record = storable.loads(raw)
        except (orjson.JSONDecodeError, json.JSONDecodeError) as exc:
            yield number, RowError(number, "", f"invalid JSON: {_json_reason(exc)}")
            continue
        yield number, record


def _json_reason(exc: Exception) -> str:
    message = str(exc)
    if "utf-8" in message.lower() or "surrogate" in message.lower():
        return "not valid UTF-8"
    if "depth limit" in message:
        return TOO_DEEP
    return message.split(": line")[0]


def _read_json_array(stream: IO[bytes]) -> Iterator[tuple[int, dict | RowError]]:
    """Stream the elements of a top-level JSON array, with the line each one starts on."""
    decoder = json.JSONDecoder()
    text_stream = io.TextIOWrapper(stream, encoding="utf-8-sig")
    buffer, line, eof = "", 1, False

    def fill() -> bool:
        nonlocal buffer, eof
        try:
            chunk = text_stream.read(CHUNK)
        except UnicodeDecodeError:
            raise FileRejected(f"the file is not valid UTF-8 (after line {line})") from None
        eof = not chunk
        buffer += chunk
        return bool(chunk)

    def skip_space() -> None:
        nonlocal buffer, line
        while True:
            stripped = buffer.lstrip()
            line += buffer.count("\n", 0, len(buffer) - len(stripped))
            buffer = stripped
            if buffer or not fill():
                return

    skip_space()
    if not buffer.startswith("["):
        raise FileRejected("a .json file must hold one array of items: [{...}, {...}]")
    buffer = buffer[1:]
    expect_comma = False
    while True:
        skip_space()
        if not buffer:
            raise FileRejected(f"the JSON array is not closed with ] (file ends at line {line})")
        if buffer[0] == "]":
            buffer = buffer[1:]
            skip_space()
            if buffer:
                raise FileRejected(f"line {line}: unexpected content after the array's closing ]")
            return
        if expect_comma:
            if buffer[0] != ",":
                raise FileRejected(f"line {line}: expected , or ] between array elements")
            buffer = buffer[1:]
            skip_space()
        while True:
            try:
                record, end = decoder.raw_decode(buffer)
                break
            except json.JSONDecodeError as exc:
                if not eof and len(buffer) < MAX_RECORD_CHARS and fill():
                    continue
                raise FileRejected(
                    f"line {line + exc.lineno - 1}: invalid JSON: {exc.msg}"
                ) from None
            except RecursionError:
                # Thousands of [ overflow the parser's stack: where the element ends is unknown.
                raise FileRejected(f"line {line}: invalid JSON: {TOO_DEEP}") from None
        yield line, record
        line += buffer.count("\n", 0, end)
        buffer = buffer[end:]
        expect_comma = True


def _read_csv(stream: IO[bytes]) -> Iterator[tuple[int, dict | RowError]]:
    lines = _CsvLines(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""))
    reader = csv.DictReader(lines)
    try:
        if not reader.fieldnames:
            raise FileRejected("the CSV file is empty")
        width = len(reader.fieldnames)
        lines.start = 0
        for row in reader:
            start, lines.start = lines.start, 0
            if None in row:
                message = f"has {width + len(row[None])} fields, the header has {width}"
                yield start, RowError(start, "", message)
            elif any(v is None for v in row.values()):
                yield start, RowError(start, "", f"has fewer fields than the header ({width})")
            else:
                try:
                    yield start, _csv_record(row)
                except KindError as exc:
                    yield start, RowError(start, exc.field, exc.message)
    except UnicodeDecodeError:
        raise FileRejected(f"the file is not valid UTF-8 (near line {lines.number + 1})") from None
    except csv.Error as exc:
        raise FileRejected(f"line {reader.line_num}: invalid CSV: {exc}") from None


class _CsvLines:
    """The lines of a CSV text stream, noting where the next record starts: the csv module
    skips blank lines and counts a quoted newline as a line, so its line_num is the end."""

    def __init__(self, text_stream: IO[str]):
        self.text_stream, self.number, self.start = text_stream, 0, 0

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        text = next(self.text_stream)
        self.number += 1
        if not self.start and text.strip("\r\n"):
            self.start = self.number
        return text


def _csv_record(row: dict) -> dict:
    """CSV columns to our record shape: response_1..N (+ model_1..N), or chosen/rejected;
    prompt_messages, label and gold hold JSON; other columns become metadata."""
    record: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    responses: dict[int, dict] = {}
    for key, value in row.items():
        key = (key or "").strip()
        if key in ("external_id", "id", "prompt", "chosen", "rejected", "priority", *TRL_SIDE_KEYS):
            if value != "":
                record[key] = value
        elif key in ("prompt_messages", "label", "gold"):
            if value.strip():
                record[key.replace("prompt_messages", "prompt")] = _csv_json(value, key)
        elif key.startswith(("response_", "model_")) and key.split("_", 1)[1].isdigit():
            slot = responses.setdefault(int(key.split("_", 1)[1]), {})
            slot["text" if key.startswith("response_") else "model"] = value
        elif key:
            metadata[key] = value
    if responses:
        record["responses"] = [
            {"id": str(n), **slot} for n, slot in sorted(responses.items()) if slot.get("text")
        ]
    if metadata:
        record["metadata"] = metadata
    return record


def _csv_json(value: str, column: str) -> Any:
    try:
        return storable.loads(value)
    except json.JSONDecodeError as exc:
        raise KindError(column, f"invalid JSON: {exc.msg}") from None


# Records to items ---------------------------------------------------------------------------


def parse_record(record: Any, *, kind: str, config: dict, keep_labels: bool) -> ParsedItem:
    """Turn one record of any accepted shape into a validated item. Raises KindError."""
    if isinstance(record, KindError):
        raise record
    if not isinstance(record, dict):
        raise KindError("", f"expected an object per row, got {type_name(record)}")
    _check_storable(record)
    if "chosen" in record or "rejected" in record:
        return _parse_trl(record, kind=kind, config=config, keep_labels=keep_labels)
    if "responses" not in record:
        raise KindError("responses", "is missing (or give TRL's chosen/rejected)")
    prompt, responses = clean_item(kind, config, record.get("prompt"), record["responses"])
    label = gold = None
    if keep_labels and record.get("label") is not None:
        label = get_kind(kind).clean_label(record["label"], responses, config)
    if record.get("gold") is not None:
        try:
            gold = get_kind(kind).clean_label(record["gold"], responses, config)
        except KindError as exc:
            # The kind names the field "label...": here it is the gold label.
            raise KindError("gold" + exc.field.removeprefix("label"), exc.message) from None
    extra = {k: v for k, v in record.items() if k not in OWN_KEYS}
    return ParsedItem(
        external_id=_external_id(record),
        prompt=prompt,
        responses=responses,
        metadata={**_metadata(record), **extra},
        priority=_priority(record.get("priority")),
        gold_label=gold,
        label=label,
    )


def _parse_trl(record: dict, *, kind: str, config: dict, keep_labels: bool) -> ParsedItem:
    chosen, rejected = record.get("chosen"), record.get("rejected")
    if chosen is None or rejected is None:
        raise KindError(
            "rejected" if chosen is not None else "chosen", "is missing: a pair needs both"
        )
    if "prompt" in record:
        prompt = record["prompt"]
        chosen_text = _completion_text(chosen, "chosen")
        rejected_text = _completion_text(rejected, "rejected")
    else:
        prompt, chosen_text, rejected_text = split_implicit_prompt(chosen, rejected)
    external_id = _external_id(record)
    # Stored order comes from the id's hash, so that "A" does not always mean "the chosen one".
    swap = hashlib.sha256(external_id.encode()).digest()[0] & 1
    chosen_id, rejected_id = _trl_ids(record, swap)
    pair = [
        {"id": chosen_id, "text": chosen_text, "model": _trl_model(record, "chosen_model")},
        {"id": rejected_id, "text": rejected_text, "model": _trl_model(record, "rejected_model")},
    ]
    responses = pair[::-1] if swap else pair
    prompt, responses = clean_item(kind, config, prompt, responses)
    label = None
    if keep_labels:
        kind_object = get_kind(kind)
        label = kind_object.label_from_preference(
            chosen_id=chosen_id, rejected_id=rejected_id, responses=responses
        )
        label = kind_object.clean_label(label, responses, config)
    extra = {k: v for k, v in record.items() if k not in TRL_KEYS}
    return ParsedItem(external_id, prompt, responses, {**_metadata(record), **extra}, label=label)


def _trl_ids(record: dict, swap: int) -> tuple[str, str]:
    """(chosen id, rejected id): the source's own (chosen_id, rejected_id) where the row has
    them, else "1" and "2" in stored order."""
    given = {key: record.get(key) for key in ("chosen_id", "rejected_id")}
    if all(value is None for value in given.values()):
        return ("2", "1") if swap else ("1", "2")
    for key, value in given.items():
        if value is None:
            other = "rejected_id" if key == "chosen_id" else "chosen_id"
            raise KindError(key, f"is missing: a row with {other} needs both ids")
        if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
            raise KindError(key, f"expected a non-empty text or number, got {value!r}")
    chosen_id, rejected_id = (str(given[key]).strip() for key in ("chosen_id", "rejected_id"))
    if chosen_id == rejected_id:
        raise KindError("rejected_id", f"is the same as chosen_id ({chosen_id!r})")
    return chosen_id, rejected_id


def _trl_model(record: dict, key: str) -> str | None:
    model = record.get(key)
    if model is not None and not isinstance(model, str):
        raise KindError(key, f"expected text, got {type_name(model)}")
    return model


def _completion_text(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        messages = [clean_message(m, f"{name}[{i}]") for i, m in enumerate(value)]
        if len(messages) == 1 and messages[0]["role"] == "assistant":
            return messages[0]["content"]
        raise KindError(name, "expected one assistant message as the completion")
    raise KindError(name, f"expected text or a list of messages, got {type_name(value)}")


def split_implicit_prompt(chosen: Any, rejected: Any) -> tuple[Any, str, str]:
    """hh-rlhf style: the shared beginning of chosen and rejected is the prompt."""
    if isinstance(chosen, list) and isinstance(rejected, list):
        chosen = [clean_message(m, f"chosen[{i}]") for i, m in enumerate(chosen)]
        rejected = [clean_message(m, f"rejected[{i}]") for i, m in enumerate(rejected)]
        n = 0
        while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
            n += 1
        if n == 0:
            raise KindError("chosen", "shares no messages with rejected: give an explicit prompt")
        return (
            chosen[:n],
            _completion_text(chosen[n:], "chosen"),
            _completion_text(rejected[n:], "rejected"),
        )
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise KindError("chosen", "chosen and rejected must both be text or both be message lists")
    common = _common_prefix(chosen, rejected)
    marker = common.rfind("\n\nAssistant:")
    if marker >= 0:
        cut = marker + len("\n\nAssistant:")
    else:
        # Without a turn marker, back off to the last whitespace so no word is split.
        cut = max(common.rfind(" "), common.rfind("\n")) + 1
    prompt = chosen[:cut]
    if not prompt.strip():
        raise KindError("chosen", "shares no beginning with rejected: give an explicit prompt")
    return prompt, chosen[cut:].lstrip(" "), rejected[cut:].lstrip(" ")


def _common_prefix(a: str, b: str) -> str:
    n = 0
    limit = min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return a[:n]


def _check_storable(record: dict) -> None:
    """Refuse what no database stores alike (annotate.storable: NUL characters, lone
    surrogates, integers past 64 bits, nesting past MAX_JSON_DEPTH). One serialisation clears
    most rows: a row orjson writes, with no NUL in it and fewer brackets than the depth limit,
    cannot fail the check; only another row is walked, to name the field at fault."""
    try:
        data = orjson.dumps(record)
    except orjson.JSONEncodeError:
        data = None
    brackets = data.count(b"[") + data.count(b"{") if data is not None else MAX_JSON_DEPTH + 1
    if brackets <= MAX_JSON_DEPTH and b"\\u0000" not in data:
        return
    for key, value in record.items():
        # Each problem named by the row's field it is in, like the kinds' errors.
        if text_problem(key):
            raise KindError(printable(key), "its name " + text_problem(key))
        problem = json_problem(value, key, depth=1)
        if problem:
            where, why = problem
            raise KindError(key, why if where == key else f"{where} {why}")
    if data is None:
        raise KindError("", "cannot be stored as JSON")


def _external_id(record: dict) -> str:
    value = record.get("external_id", record.get("id"))
    if value is None or value == "":
        # Derived from the content, so importing the same file twice is a no-op.
        digest = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return f"sha256-{digest[:32]}"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise KindError("external_id", f"expected text or a number, got {type_name(value)}")
    value = str(value).strip()
    if not value or len(value) > 255:
        raise KindError("external_id", "must be 1 to 255 characters")
    return value


def _metadata(record: dict) -> dict:
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise KindError("metadata", f"expected an object, got {type_name(metadata)}")
    return metadata


PRIORITY_LIMIT = 2**31 - 1  # Item.priority is a 32-bit column on every database


def _priority(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool | float):
        raise KindError("priority", f"expected a whole number, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise KindError("priority", f"expected a whole number, got {value!r}") from None
    if not -PRIORITY_LIMIT <= number <= PRIORITY_LIMIT:
        raise KindError("priority", f"must be between -{PRIORITY_LIMIT} and {PRIORITY_LIMIT}")
    return number
