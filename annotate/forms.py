"""Forms of the pages: they parse and check input; the services decide what is allowed."""

from __future__ import annotations

import json

from django import forms
from django.conf import settings

from .importing import human_bytes
from .models import Kind, Role


class PrettyJSONField(forms.JSONField):
    """A JSON textarea that shows its value indented, for people to edit."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        if value is None:
            return ""
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=Kind.choices, initial=Kind.PAIRWISE)
    overlap = forms.IntegerField(
        min_value=1, max_value=100, initial=1, help_text="Human labels wanted per item."
    )
    guidelines = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text="Markdown, shown to annotators.",
    )
    config = PrettyJSONField(
        required=False,
        label="Kind settings",
        # Left empty, not pre-filled: one kind's defaults are an error for every other kind.
        widget=forms.Textarea(attrs={"rows": 12, "class": "mono", "spellcheck": "false"}),
        help_text="JSON, merged over the kind's defaults (listed below). Leave empty for them.",
    )

    def clean_config(self) -> dict:
        config = self.cleaned_data["config"]
        if config is None:
            return {}
        if not isinstance(config, dict):
            raise forms.ValidationError('Expected a JSON object: {"key": value, ...}.')
        return config


class ImportForm(forms.Form):
    FORMAT_CHOICES = [
        ("", "Detect from the file"),
        ("jsonl", "JSON Lines (one object per line)"),
        ("json", "JSON array"),
        ("csv", "CSV"),
    ]

    file = forms.FileField(
        widget=forms.ClearableFileInput(attrs={"accept": ".jsonl,.ndjson,.json,.csv,.txt"})
    )
    format = forms.ChoiceField(choices=FORMAT_CHOICES, required=False)
    skip_invalid = forms.BooleanField(
        required=False,
        label="Skip invalid rows",
        help_text="Import the good rows even when some are bad (otherwise nothing is imported).",
    )
    keep_labels = forms.BooleanField(
        required=False,
        label="Keep labels",
        help_text="Store labels found in the file (label, or TRL's chosen/rejected) as imported.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is {human_bytes(upload.size)}, over the size limit of "
                f"{human_bytes(settings.IMPORT_MAX_BYTES)}."
            )
        return upload


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


# Annotation forms ---------------------------------------------------------------------------
# The annotate page posts plain form fields (it works without JS); these functions turn them
# into a kind's label and back. The kind still validates every label (annotation_submit).
# Field names: pairwise choice/strength/rationale; listwise rank-<id>; spans spans_json,
# missing, corrected-<id>; ratings rating-<id>-<aspect>, rationale-<id>. Any page may post a
# whole label as JSON in `label_json` instead.

SKIP_REASONS = [
    ("", "Choose a reason…"),
    ("unclear prompt", "The prompt is unclear"),
    ("both unusable", "The responses are broken or empty"),
    ("need expertise", "I lack the expertise to judge"),
    ("harmful content", "Harmful or disturbing content"),
    ("duplicate", "Duplicate of an item I labeled"),
    ("other", "Other (say below)"),
]
PAIRWISE_STRENGTHS = [
    (1, "slightly better", "s"),
    (2, "clearly better", "c"),
    (3, "much better", "m"),
]


class LabelInputError(Exception):
    """The posted fields do not make a label; `errors` maps form field names to messages."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def label_from_post(kind: str, data, responses: list[dict], config: dict) -> dict:
    """The label the posted fields describe, in display terms (A is the response shown first).

    Raises LabelInputError for fields that are missing or malformed; what is left to check
    (ties allowed, offsets in range, ...) is the kind's job."""
    raw = (data.get("label_json") or "").strip()
    if raw:
        try:
            label = json.loads(raw)
        except ValueError:
            raise LabelInputError({"form": "The label sent by the page is not JSON."}) from None
        if not isinstance(label, dict):
            raise LabelInputError({"form": "The label sent by the page is not an object."})
        return label
    return _FROM_POST[kind](data, responses, config)


def _pairwise_from_post(data, responses, config) -> dict:
    choice, errors, strength = data.get("choice", ""), {}, None
    if choice not in ("A", "B", "tie"):
        errors["choice"] = "Choose A, B or tie." if config["allow_tie"] else "Choose A or B."
    elif choice != "tie":
        strength = _int_or_none(data.get("strength"))
        if strength not in (1, 2, 3):
            errors["strength"] = "Say how much better: slightly, clearly or much."
    if errors:
        raise LabelInputError(errors)
    return {"choice": choice, "strength": strength, "rationale": data.get("rationale", "")}


def _listwise_from_post(data, responses, config) -> dict:
    ranks, errors, count = {}, {}, len(responses)
    for response in responses:
        field = f"rank-{response['id']}"
        rank = _int_or_none(data.get(field))
        if rank is None or not 1 <= rank <= count:
            errors[field] = f"Give a rank from 1 (best) to {count}."
        else:
            ranks[response["id"]] = rank
    if not errors and not config["allow_ties"]:
        for response in responses:
            rid = response["id"]
            if list(ranks.values()).count(ranks[rid]) > 1:
                errors[f"rank-{rid}"] = f"Rank {ranks[rid]} is given twice; ties are not allowed."
    if errors:
        raise LabelInputError(errors)
    ranking = []
    for rank in sorted(set(ranks.values())):
        group = [r["id"] for r in responses if ranks[r["id"]] == rank]
        ranking.append(group[0] if len(group) == 1 else group)
    return {"ranking": ranking}


def _spans_from_post(data, responses, config) -> dict:
    try:
        spans = json.loads(data.get("spans_json") or "[]")
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
        text = _newlines(data.get(f"corrected-{response['id']}", ""))
        if text.strip() and text != _newlines(response["text"]):
            corrected[response["id"]] = text
    return {"spans": spans, "missing": data.get("missing", ""), "corrected": corrected}


def _ratings_from_post(data, responses, config) -> dict:
    low, high = config["scale"]["min"], config["scale"]["max"]
    rated, errors = {}, {}
    for response in responses:
        rid, scores = response["id"], {}
        for aspect in config["aspects"]:
            field = f"rating-{rid}-{aspect['name']}"
            score = _int_or_none(data.get(field))
            if score is None or not low <= score <= high:
                errors[field] = f"Rate {_words(aspect['name'])} from {low} to {high}."
            scores[aspect["name"]] = score
        rated[rid] = {"aspects": scores, "rationale": data.get(f"rationale-{rid}", "")}
    if errors:
        raise LabelInputError(errors)
    return {"responses": rated}


_FROM_POST = {
    Kind.PAIRWISE: _pairwise_from_post,
    Kind.LISTWISE: _listwise_from_post,
    Kind.SPANS: _spans_from_post,
    Kind.RATINGS: _ratings_from_post,
}


def post_from_label(kind: str, label: dict, responses: list[dict]) -> dict:
    """The form fields that show a stored label (in display terms), to reopen it."""
    if kind == Kind.PAIRWISE:
        strength = label.get("strength")
        return {
            "choice": label.get("choice", ""),
            "strength": "" if strength is None else str(strength),
            "rationale": label.get("rationale", ""),
        }
    if kind == Kind.LISTWISE:
        values = {}
        for position, entry in enumerate(label.get("ranking", []), start=1):
            for rid in entry if isinstance(entry, list) else [entry]:
                values[f"rank-{rid}"] = str(position)
        return values
    if kind == Kind.SPANS:
        texts = {r["id"]: r["text"] for r in responses}
        spans = [
            {**s, "text": texts.get(s["response"], "")[s["start"] : s["end"]]}
            for s in label.get("spans", [])
        ]
        values = {"spans_json": json.dumps(spans, ensure_ascii=False)}
        values["missing"] = label.get("missing", "")
        for rid, text in (label.get("corrected") or {}).items():
            values[f"corrected-{rid}"] = text
        return values
    values = {}
    for rid, rating in (label.get("responses") or {}).items():
        for name, score in rating.get("aspects", {}).items():
            values[f"rating-{rid}-{name}"] = str(score)
        values[f"rationale-{rid}"] = rating.get("rationale", "")
    return values


def form_field_for(kind: str, field: str, responses: list[dict], config: dict) -> str:
    """The form field that a kind's error (`label.strength`, `label.spans[2].label`, ...) is
    about, to show the message next to it; "form" when none fits."""
    field = field.removeprefix("label.")
    if kind == Kind.PAIRWISE and field in ("choice", "strength", "rationale"):
        return field
    if kind == Kind.LISTWISE and field.startswith("ranking"):
        return "ranking"
    if kind == Kind.SPANS:
        if field.startswith("spans"):
            return "spans"
        if field == "missing" or field.startswith("corrected."):
            return field.replace(".", "-", 1)
    if kind == Kind.RATINGS:
        for response in responses:
            rid = response["id"]
            if field == f"responses.{rid}.rationale":
                return f"rationale-{rid}"
            for aspect in config["aspects"]:
                if field == f"responses.{rid}.aspects.{aspect['name']}":
                    return f"rating-{rid}-{aspect['name']}"
    return "form"


def _int_or_none(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _newlines(text: str) -> str:
    # Browsers send a textarea's line breaks as CRLF.
    return text.replace("\r\n", "\n")


def _words(name: str) -> str:
    return name.replace("_", " ").replace("-", " ")


def kind_context(kind: str, config: dict, responses: list[dict], values, errors: dict) -> dict:
    """What a kind's form partial (templates/annotate/kinds/<kind>.html) shows: the responses in
    display order, each with its letter, rendered Markdown and its fields' values and errors."""
    from .rendering import render_response

    shown = [
        {"letter": _letter(i), "response": r, "html": render_response(r["text"])}
        for i, r in enumerate(responses)
    ]
    if kind == Kind.PAIRWISE:
        for side, key in zip(shown, ("1", "2"), strict=False):
            side["key"] = key
        return {"sides": shown, "strengths": PAIRWISE_STRENGTHS}
    if kind == Kind.LISTWISE:
        return {"cards": _listwise_cards(shown, values, errors)}
    if kind == Kind.SPANS:
        for entry in shown:
            rid = entry["response"]["id"]
            entry["corrected_field"] = f"corrected-{rid}"
            entry["corrected"] = values.get(f"corrected-{rid}", "")
            entry["corrected_error"] = errors.get(f"corrected-{rid}", "")
        texts = {r["id"]: r["text"] for r in responses}
        return {"responses": shown, "texts": texts, "spans_json": values.get("spans_json", "[]")}
    scale = config["scale"]
    points = [
        {"value": v, "label": str(scale["labels"].get(str(v), ""))}
        for v in range(scale["min"], scale["max"] + 1)
    ]
    for entry in shown:
        rid = entry["response"]["id"]
        entry["aspects"] = [
            {
                **aspect,
                "title": _words(aspect["name"]),
                "field": f"rating-{rid}-{aspect['name']}",
                "value": values.get(f"rating-{rid}-{aspect['name']}", ""),
                "error": errors.get(f"rating-{rid}-{aspect['name']}", ""),
            }
            for aspect in config["aspects"]
        ]
        entry["rationale_field"] = f"rationale-{rid}"
        entry["rationale"] = values.get(f"rationale-{rid}", "")
    return {"rows": shown, "points": points}


def _listwise_cards(shown: list[dict], values, errors: dict) -> list[dict]:
    for entry in shown:
        entry["field"] = f"rank-{entry['response']['id']}"
        entry["rank"] = values.get(entry["field"], "")
        entry["error"] = errors.get(entry["field"], "")
    ranks = [_int_or_none(entry["rank"]) for entry in shown]
    if None not in ranks:
        # A posted or stored ranking is shown in its order; ties sit next to each other.
        shown = [entry for _, entry in sorted(zip(ranks, shown, strict=True), key=lambda p: p[0])]
    previous = None
    for entry in shown:
        entry["tied"] = bool(entry["rank"]) and entry["rank"] == previous
        previous = entry["rank"]
    return shown


def letter_of(responses: list[dict]) -> dict[str, str]:
    """Response id → the letter the page calls it by (A, B, ... in display order)."""
    return {r["id"]: _letter(i) for i, r in enumerate(responses)}


def _letter(index: int) -> str:
    return chr(ord("A") + index) if index < 26 else str(index + 1)


def label_summary(kind: str, label: dict, letters: dict[str, str]) -> str:
    """A label in a few words, for the list of recent labels (label in display terms)."""
    if kind == Kind.PAIRWISE:
        if label.get("choice") == "tie":
            return "tie"
        strength = dict((n, words) for n, words, _ in PAIRWISE_STRENGTHS).get(label.get("strength"))
        return f"{label.get('choice')} {strength or ''}".strip()
    if kind == Kind.LISTWISE:
        return " > ".join(
            " = ".join(letters.get(r, r) for r in entry)
            if isinstance(entry, list)
            else letters.get(entry, entry)
            for entry in label.get("ranking", [])
        )
    if kind == Kind.SPANS:
        n = len(label.get("spans", []))
        return f"{n} span{'s' if n != 1 else ''}" if n else "no errors"
    scores = [s for r in (label.get("responses") or {}).values() for s in r["aspects"].values()]
    return f"mean {sum(scores) / len(scores):.1f}" if scores else ""
