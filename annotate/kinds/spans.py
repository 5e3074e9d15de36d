"""Fine-grained spans: highlight spans of a response, tag each with an error type, optionally
correct it; plus an item-level "missing information" note and corrected whole responses.

Canonical label:
  {"spans": [{"response": id, "start": int, "end": int, "label": str, "correction": str|None}],
   "missing": str | object | list, "corrected": {response_id: str}}
"missing" is a free-text note, or a structured one as the source gives it (e.g. Fine-Grained
RLHF's {"type", "passage", "sentence"}, or a list of those), stored as it came.
Offsets are character offsets (Unicode code points, as Python counts them) into the response
text; the page converts from the browser's UTF-16 units. An empty span list means "no errors".
"""

from __future__ import annotations

import functools
import json
import unicodedata
from typing import Any

from .. import storable
from .aggregate import majority_spans
from .base import (
    Kind,
    KindError,
    LabelInputError,
    Vocabulary,
    closed_object,
    count_responses,
    extract_json,
    id_of_letter,
    newlines,
    optional_str,
    reject_unknown,
    require_dict,
    require_int,
    response_ids,
    shown_letters,
    type_name,
)

# Fine-Grained RLHF's QA-feedback error types, each mapped to its reward category.
DEFAULT_TAXONOMY = [
    {
        "name": "irrelevant",
        "category": "non-factual",
        "hotkey": "i",
        "description": "Off topic or not needed to answer the question.",
    },
    {
        "name": "redundant",
        "category": "non-factual",
        "hotkey": "r",
        "description": "Repeats something already said.",
    },
    {
        "name": "incoherent",
        "category": "non-factual",
        "hotkey": "c",
        "description": "Does not follow from the text around it, or contradicts it.",
    },
    {
        "name": "unverifiable",
        "category": "factual",
        "hotkey": "u",
        "description": "A claim the passages or common knowledge cannot confirm.",
    },
    {
        "name": "wrong-grounding",
        "category": "factual",
        "hotkey": "w",
        "description": "Contradicts the given passages or known facts.",
    },
]
MAX_SPANS = 500
MAX_NOTE_CHARS = 20_000  # a structured note, as JSON; as much as a free-text one


class Spans(Kind):
    name = "spans"
    title = "Fine-grained spans"
    DEFAULT_CONFIG = {"taxonomy": DEFAULT_TAXONOMY, "allow_corrections": True}
    submit_words = "Submit spans"
    answers_no_errors = True
    objective = "spans"
    judge_template = (
        "Find the errors in the {% if responses|length > 1 %}responses{% else %}response"
        "{% endif %} to the user's request below, using the error types listed.\n\n"
        "[User request]\n{{ prompt }}\n\n"
        "{% if reference %}[Reference answer]\n{{ reference }}\n\n{% endif %}"
        "{% for r in responses %}[Response {{ r.letter }}]\n{{ r.text }}\n[End of response "
        "{{ r.letter }}]\n\n{% endfor %}"
        "[Error types]\n{% for t in taxonomy %}- {{ t.name }}"
        "{% if t.description %}: {{ t.description }}{% endif %}\n{% endfor %}\n"
        "{% if guidelines %}[Guidelines]\n{{ guidelines }}\n\n{% endif %}"
        'Reply with JSON: {"spans": a list with one entry per error, each {"response": the '
        "letter of the response ({% for r in responses %}{{ r.letter }}"
        '{% if not forloop.last %}, {% endif %}{% endfor %}), "quote": the erroneous text, '
        "copied exactly from that response and no longer than the error, "
        '"occurrence": which appearance of the quote in the response you mean (1 for the '
        'first) when it appears more than once, else null, "label": one of the error types'
        '{% if allow_corrections %}, "correction": the text that should replace the quote, '
        "or null{% endif %}}, "
        '"missing": what the response should have said but did not, or ""}. '
        'An empty "spans" list means you found no errors.'
    )

    def clean_config(self, config: dict) -> dict:
        config = self.with_defaults(config)
        taxonomy = config["taxonomy"]
        if not isinstance(taxonomy, list) or not taxonomy:
            raise KindError("config.taxonomy", "expected a non-empty list of error types")
        hotkeys, cleaned = set(), []
        for i, entry in enumerate(taxonomy):
            field = f"config.taxonomy[{i}]"
            if isinstance(entry, str):
                entry = {"name": entry}
            entry = require_dict(entry, field)
            reject_unknown(entry, {"name", "category", "description", "hotkey"}, field)
            name = entry.get("name")
            if not isinstance(name, str) or not name.strip():
                raise KindError(f"{field}.name", "is required")
            name = name.strip()
            hotkey = str(entry.get("hotkey") or "").lower()
            if hotkey and (len(hotkey) != 1 or hotkey in hotkeys):
                raise KindError(f"{field}.hotkey", f"{hotkey!r} must be one character, used once")
            hotkeys.add(hotkey)
            cleaned.append(
                {
                    "name": name,
                    "category": str(entry.get("category") or name).strip(),
                    "description": str(entry.get("description") or ""),
                    "hotkey": hotkey,
                }
            )
        Vocabulary([entry["name"] for entry in cleaned], "config.taxonomy")
        if not isinstance(config["allow_corrections"], bool):
            raise KindError("config.allow_corrections", "expected true or false")
        return {**config, "taxonomy": cleaned}

    def check_responses(self, responses: list[dict], config: dict) -> None:
        count_responses(responses, 1, None, "spans")

    def clean_label(self, label, responses: list[dict], config: dict) -> dict:
        label = require_dict(label, "label")
        reject_unknown(label, {"spans", "missing", "corrected"})
        spans = label.get("spans")
        if not isinstance(spans, list):
            raise KindError("label.spans", "expected a list (an empty list means no errors found)")
        if len(spans) > MAX_SPANS:
            raise KindError("label.spans", f"has {len(spans)} spans, over the limit of {MAX_SPANS}")
        texts = {r["id"]: r["text"] for r in responses}
        labels = Vocabulary([t["name"] for t in config["taxonomy"]], "config.taxonomy")
        cleaned = [
            _clean_span(s, f"label.spans[{i}]", texts, labels, config) for i, s in enumerate(spans)
        ]
        cleaned.sort(
            key=lambda s: (response_ids(responses).index(s["response"]), s["start"], s["end"])
        )
        corrected = label.get("corrected") or {}
        corrected = require_dict(corrected, "label.corrected")
        if corrected and not config["allow_corrections"]:
            raise KindError("label.corrected", "this project does not take corrections")
        for rid, text in corrected.items():
            if rid not in texts:
                raise KindError(f"label.corrected.{rid}", "is not a response of this item")
            if not isinstance(text, str):
                raise KindError(f"label.corrected.{rid}", f"expected text, got {type_name(text)}")
        return {
            "spans": cleaned,
            "missing": _clean_missing(label.get("missing")),
            "corrected": {rid: corrected[rid] for rid in sorted(corrected)},
        }

    # Form: spans_json (the page's span list), missing, corrected-<id>; action=no_errors.

    def label_from_post(self, data, responses: list[dict], config: dict) -> dict:
        try:
            spans = storable.loads(data.get("spans_json") or "[]")
        except ValueError:
            spans = None
        if not isinstance(spans, list):
            raise LabelInputError({"spans": "The spans sent by the page are not a list."})
        no_errors = data.get("action") == "no_errors"
        if no_errors and spans:
            n = len(spans)
            raise LabelInputError(
                {"spans": f"You marked {n} span{'s' if n > 1 else ''}: delete them or submit them."}
            )
        if not no_errors and not spans:
            raise LabelInputError({"spans": "Mark at least one span, or answer “No errors”."})
        corrected = {}
        for response in responses if config["allow_corrections"] else []:
            text = newlines(data.get(f"corrected-{response['id']}", ""))
            if text.strip() and text != newlines(response["text"]):
                corrected[response["id"]] = text
        missing = data.get("missing", "")
        # A structured note reopened on the page comes back as the JSON it was shown as.
        if data.get("missing_format") == "json" and missing.strip():
            try:
                missing = storable.loads(missing)
            except ValueError as exc:
                raise LabelInputError({"missing": f"This note must stay JSON: {exc}."}) from None
        return {"spans": spans, "missing": missing, "corrected": corrected}

    def post_from_label(self, label: dict, responses: list[dict]) -> dict:
        texts = {r["id"]: r["text"] for r in responses}
        spans = [
            {**s, "text": texts.get(s["response"], "")[s["start"] : s["end"]]}
            for s in label.get("spans", [])
        ]
        values = {"spans_json": json.dumps(spans, ensure_ascii=False)}
        missing = label.get("missing", "")
        values["missing"] = missing
        if not isinstance(missing, str):
            values["missing"] = json.dumps(missing, ensure_ascii=False, indent=2)
            values["missing_format"] = "json"
        for rid, text in (label.get("corrected") or {}).items():
            values[f"corrected-{rid}"] = text
        return values

    def form_field_for(self, field: str, responses: list[dict], config: dict) -> str:
        if field.startswith("spans"):
            return "spans"
        if field == "missing" or field.startswith("corrected."):
            return field.replace(".", "-", 1)
        return "form"

    def form_context(self, shown, config, responses, values, errors) -> dict:
        for entry in shown:
            rid = entry["response"]["id"]
            entry["corrected_field"] = f"corrected-{rid}"
            entry["corrected"] = values.get(f"corrected-{rid}", "")
            entry["corrected_error"] = errors.get(f"corrected-{rid}", "")
        texts = {r["id"]: r["text"] for r in responses}
        return {"responses": shown, "texts": texts, "spans_json": values.get("spans_json", "[]")}

    def label_summary(self, label: dict, letters: dict[str, str]) -> str:
        n = len(label.get("spans", []))
        return f"{n} span{'s' if n != 1 else ''}" if n else "no errors"

    # Judges: a span is a quote of the response, mapped back to offsets here (a model cannot
    # count characters). Spans name responses by id: display and item terms are the same.

    def judge_context(self, shown: list[dict], config: dict) -> dict:
        return {"taxonomy": config["taxonomy"], "allow_corrections": config["allow_corrections"]}

    def judge_schema(self, shown: list[dict], config: dict) -> dict:
        span = {
            "response": {"type": "string", "enum": list(shown_letters(shown))},
            "quote": {"type": "string"},
            "occurrence": {"type": ["integer", "null"], "minimum": 1},
            "label": {"type": "string", "enum": [t["name"] for t in config["taxonomy"]]},
        }
        if config["allow_corrections"]:
            span["correction"] = {"type": ["string", "null"]}
        return closed_object(
            {
                "spans": {"type": "array", "items": closed_object(span)},
                "missing": {"type": "string"},
            }
        )

    def parse_judge_output(self, text: str, shown: list[dict], config: dict) -> dict:
        data = extract_json(text)
        if data is not None and "spans" in data:
            spans, missing = data["spans"], data.get("missing")
        else:
            # A bare list of spans, as some models answer.
            spans, missing = extract_json(text, list), None
            if spans is None:
                raise KindError(
                    "spans", 'no JSON object with "spans" (an empty list when there are no errors)'
                )
        if not isinstance(spans, list):
            raise KindError("spans", f"expected a list of spans, got {type_name(spans)}")
        letters = shown_letters(shown)
        labels = Vocabulary([t["name"] for t in config["taxonomy"]], "config.taxonomy")
        found: list[dict] = []
        for i, span in enumerate(spans):
            found.append(_judge_span(span, f"spans[{i}]", shown, letters, labels, found, config))
        return {"spans": found, "missing": "" if missing is None else missing, "corrected": {}}

    def label_from_aggregate(self, answer, responses: list[dict], config: dict) -> dict | None:
        """The spans that a majority of the labels mark (answer: {response id: [(start, end,
        label), ...]}); no missing note, no corrections."""
        spans = [
            {"response": rid, "start": start, "end": end, "label": label, "correction": None}
            for rid in response_ids(responses)
            for start, end, label in answer.get(rid, [])
        ]
        return {"spans": spans, "missing": "", "corrected": {}}

    # Aggregation and training.

    def aggregate(self, labels: list[dict], responses: list[dict], config: dict) -> tuple:
        """Per response, on its own: answer {response id: [(start, end, label), ...]} and
        agreement {response id: agreement}."""
        kept, agreement = {}, {}
        for rid in response_ids(responses):
            per_label = [
                [s for s in label.get("spans", []) if s.get("response") == rid] for label in labels
            ]
            kept[rid], agreement[rid] = majority_spans(per_label, len(labels))
        return kept, agreement

    def check_training_row(self, row: dict, where: str, **facts: Any) -> None:
        classes = span_classes(facts.get("taxonomy"))
        response, spans = row.get("response"), row.get("spans")
        if not isinstance(response, str) or not isinstance(spans, list):
            raise KindError(where, "expected `response` and `spans` (is this a spans export?)")
        for i, span in enumerate(spans):
            if not isinstance(span, dict):
                raise KindError(where, f"spans[{i}] must be an object")
            start, end, label = span.get("start"), span.get("end"), span.get("label")
            if label not in classes:
                known = ", ".join(sorted(classes))
                raise KindError(where, f"span label {label!r} is not in the taxonomy ({known})")
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end):
                raise KindError(where, f"spans[{i}] needs integer 0 <= start < end")
            if end > len(response):
                raise KindError(where, f"spans[{i}] ends at {end}, past the response's end")


def span_classes(taxonomy: list[dict] | None) -> dict[str, str]:
    """Span label → its reward category, from the project's taxonomy."""
    if not taxonomy:
        raise KindError("spans", "the project's taxonomy is needed (name, category per error type)")
    return {t["name"]: t.get("category") or t["name"] for t in taxonomy}


def _judge_span(
    span, field: str, shown: list[dict], letters: dict, labels: Vocabulary, found: list, config
) -> dict:
    """One span of a judge's reply as a label's span: its quote located in the response."""
    span = require_dict(span, field)
    # A reply about a single response may leave out which one it means.
    if span.get("response") is None and len(shown) == 1:
        rid = shown[0]["id"]
    else:
        rid = id_of_letter(span.get("response"), letters, f"{field}.response")
    label = labels.canonical(span.get("label"), f"{field}.label", "in the taxonomy")
    occurrence = span.get("occurrence")
    if occurrence is not None:
        occurrence = require_int(occurrence, f"{field}.occurrence", 1, 1_000_000)
    taken = {(s["start"], s["end"]) for s in found if s["response"] == rid and s["label"] == label}
    text = next(r["text"] for r in shown if r["id"] == rid)
    start, end = locate_quote(
        text, span.get("quote"), occurrence=occurrence, taken=taken, field=f"{field}.quote"
    )
    # A project without corrections drops them: the schema and the prompt did not ask for one.
    correction = span.get("correction") if config["allow_corrections"] else None
    return {"response": rid, "start": start, "end": end, "label": label, "correction": correction}


# Quotes to offsets ----------------------------------------------------------------------------

_ZWJ = "\u200d"
# Curly quotes (and primes) read as the straight ones a model may write instead, or the reverse.
_STRAIGHT = str.maketrans(
    dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'")
    | dict.fromkeys("\u201c\u201d\u201e\u201f\u2033", '"')
)


def locate_quote(
    text: str,
    quote: Any,
    *,
    occurrence: int | None = None,
    taken: set[tuple[int, int]] | frozenset = frozenset(),
    field: str = "quote",
) -> tuple[int, int]:
    """(start, end): the offsets (code points) of `quote` in `text`, so that text[start:end] is
    the response's own text. An exact match first; failing that, one that ignores differences
    in whitespace runs, Unicode normalisation (NFC/NFD) and curly/straight quotes. A match never
    cuts a character in two (a letter from its accents, an emoji from its ZWJ sequence).
    `occurrence` (1-based) picks among several matches; without it, the first match not in
    `taken` (the spans of the same label so far), else the first. KindError when it is nowhere.
    """
    if not isinstance(quote, str) or not quote.strip():
        raise KindError(field, "expected the erroneous text, copied from the response")
    matches = _exact_matches(text, quote) or _folded_matches(text, quote)
    shown = repr(quote if len(quote) <= 80 else quote[:79] + "…")
    if not matches:
        raise KindError(field, f"{shown} is not in the response")
    if occurrence is not None:
        if occurrence > len(matches):
            times = "once" if len(matches) == 1 else f"{len(matches)} times"
            raise KindError(field, f"{shown} appears {times}, not {occurrence}")
        return matches[occurrence - 1]
    return next((m for m in matches if m not in taken), matches[0])


def _exact_matches(text: str, quote: str) -> list[tuple[int, int]]:
    matches, at = [], text.find(quote)
    while at != -1:
        if at in _bounds(text) and at + len(quote) in _bounds(text):
            matches.append((at, at + len(quote)))
            at = text.find(quote, at + len(quote))
        else:
            at = text.find(quote, at + 1)
    return matches


def _folded_matches(text: str, quote: str) -> list[tuple[int, int]]:
    """Matches of the folded quote in the folded text, as offsets into the original text."""
    folded, units = _fold(text)
    needle = _fold(quote)[0].strip(" ")
    # Only a match from the start of a unit of the original to the end of one counts.
    starts = {k for k in range(len(folded)) if k == 0 or units[k] != units[k - 1]}
    matches, at = [], folded.find(needle) if needle else -1
    while at != -1:
        end = at + len(needle)
        if at in starts and (end == len(folded) or end in starts):
            matches.append((units[at][0], units[end - 1][1]))
            at = folded.find(needle, end)
        else:
            at = folded.find(needle, at + 1)
    return matches


# A reply quotes the same response again and again: its bounds and folding are worked out once.
@functools.lru_cache(maxsize=16)
def _bounds(text: str) -> frozenset[int]:
    return frozenset(start for start, _ in _clusters(text)) | {len(text)}


@functools.lru_cache(maxsize=64)
def _fold(text: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """`text` with each whitespace run as one space, each character decomposed (NFD) and curly
    quotes straight; and for each folded character, the (start, end) in `text` of the unit (a
    character with its marks, or a whitespace run) it comes from."""
    out: list[str] = []
    units: list[tuple[int, int]] = []
    for start, end in _clusters(text):
        piece = text[start:end]
        if piece.isspace():
            if out and out[-1] == " ":
                units[-1] = (units[-1][0], end)
                continue
            folded = " "
        else:
            folded = unicodedata.normalize("NFD", piece).translate(_STRAIGHT)
        out.extend(folded)
        units.extend([(start, end)] * len(folded))
    return "".join(out), tuple(units)


def _clusters(text: str) -> list[tuple[int, int]]:
    """(start, end) of each character as a reader sees one (a simplified grapheme cluster): a
    code point with the marks, variation selectors, skin tones and tags after it, joined by
    ZWJ to what follows; two regional indicators (a flag) together."""
    clusters, i, n = [], 0, len(text)
    while i < n:
        j = i + 1
        if _regional(text[i]) and j < n and _regional(text[j]):
            j += 1
        while j < n and (_extends(text[j]) or text[j - 1] == _ZWJ):
            j += 1
        clusters.append((i, j))
        i = j
    return clusters


def _extends(char: str) -> bool:
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or char == _ZWJ
        or "\ufe00" <= char <= "\ufe0f"
        or "\U0001f3fb" <= char <= "\U0001f3ff"
        or "\U000e0020" <= char <= "\U000e007f"
    )


def _regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _clean_missing(note: Any) -> str | dict | list:
    """Free text (stripped), or a JSON object or list kept exactly as given."""
    if note is None or isinstance(note, str):
        return optional_str(note, "label.missing").strip()
    if not isinstance(note, dict | list):
        raise KindError(
            "label.missing", f"expected text, an object or a list, got {type_name(note)}"
        )
    try:
        text = json.dumps(note, ensure_ascii=False, allow_nan=False)
        same = json.loads(text) == note
    except (TypeError, ValueError, RecursionError):
        same = False
    if not same:
        raise KindError("label.missing", "is not plain JSON (text keys; no NaN or infinity)")
    if len(text) > MAX_NOTE_CHARS:
        raise KindError(
            "label.missing",
            f"is {len(text)} characters as JSON, over the limit of {MAX_NOTE_CHARS}",
        )
    return note


def _clean_span(span, field: str, texts: dict, labels: Vocabulary, config: dict) -> dict:
    span = require_dict(span, field)
    reject_unknown(span, {"response", "start", "end", "label", "correction", "text"}, field)
    rid = str(span.get("response", ""))
    if rid not in texts:
        raise KindError(
            f"{field}.response", f"{span.get('response')!r} is not a response of this item"
        )
    start, end, length = span.get("start"), span.get("end"), len(texts[rid])
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise KindError(f"{field}.{name}", f"expected a character offset, got {value!r}")
    if not 0 <= start < end <= length:
        raise KindError(
            field, f"offsets {start}..{end} are out of range for a text of {length} characters"
        )
    label = labels.canonical(span.get("label"), f"{field}.label", "in the taxonomy")
    # The page may send the text it highlighted: it must be the text at those offsets.
    if "text" in span and span["text"] != texts[rid][start:end]:
        raise KindError(f"{field}.text", "does not match the response text at those offsets")
    correction = span.get("correction")
    if correction is not None:
        if not config["allow_corrections"]:
            raise KindError(f"{field}.correction", "this project does not take corrections")
        correction = optional_str(correction, f"{field}.correction")
    return {
        "response": rid,
        "start": start,
        "end": end,
        "label": label,
        "correction": correction if correction else None,
    }
