"""Forms of the pages: they parse and check input; the services decide what is allowed."""

from __future__ import annotations

import json

from django import forms
from django.conf import settings

from . import storable
from .importing import human_bytes
from .kinds import LabelInputError, get_kind
from .kinds.base import response_letter
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
    labels_for_existing = forms.BooleanField(
        required=False,
        label="Labels for existing items too",
        help_text="Also add the file's labels to items already in the project (a label equal to "
        "one imported before is not added again). Implies keeping labels.",
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
# Each kind names its fields (annotate/kinds/<kind>.py). Any page may post a whole label as
# JSON in `label_json` instead.

SKIP_REASONS = [
    ("", "Choose a reason…"),
    ("unclear prompt", "The prompt is unclear"),
    ("both unusable", "The responses are broken or empty"),
    ("need expertise", "I lack the expertise to judge"),
    ("harmful content", "Harmful or disturbing content"),
    ("duplicate", "Duplicate of an item I labeled"),
    ("other", "Other (say below)"),
]


class PostRefused(LabelInputError):
    """A post no page of ours sends: a field holds a NUL character (no keyboard types one, no
    database stores one). Answered 400 with the form again, showing `values`, the fields as
    sent less their NUL characters: nothing typed is lost."""

    def __init__(self, errors: dict[str, str], values):
        super().__init__(errors)
        self.values = values


def check_post(data, where: str = "form") -> None:
    """Refuse (PostRefused) a post of the annotate page with a NUL character in any field:
    the one check before a label, a skip reason or any other posted text is used. `where`:
    the form whose message it is ("form", or "skip" for the skip form)."""
    # A QueryDict (request.POST) may hold several values per name; a plain mapping, one.
    lists = data.lists() if hasattr(data, "getlist") else ((k, [v]) for k, v in data.items())
    bad = [name for name, values in lists if any("\x00" in str(v) for v in values)]
    if not bad:
        return
    values = data.copy()
    for name in bad:
        if hasattr(values, "setlist"):
            values.setlist(name, [v.replace("\x00", "") for v in data.getlist(name)])
        else:
            values[name] = str(data[name]).replace("\x00", "")
    names = ", ".join(storable.printable(name) for name in bad)
    message = (
        f"Not saved: {names} held a NUL character (\\0), which cannot be stored. It is removed "
        "below: check the text and send it again."
    )
    raise PostRefused({where: message}, values)


def skip_reason_from_post(data) -> str:
    """The skip reason the skip form posted: the reason chosen, with the details typed."""
    check_post(data, "skip")
    reason = data.get("reason", "").strip()
    detail = data.get("reason_text", "").strip()
    if reason == "other" or not reason:
        return detail
    return f"{reason}: {detail}" if detail else reason


def label_from_post(kind: str, data, responses: list[dict], config: dict) -> dict:
    """The label the posted fields describe, in display terms (A is the response shown first).

    Raises LabelInputError for fields that are missing or malformed (PostRefused for a post no
    page sends); what is left to check (ties allowed, offsets in range, ...) is the kind's job."""
    check_post(data)
    raw = (data.get("label_json") or "").strip()
    if raw:
        try:
            label = storable.loads(raw)
        except ValueError:
            raise LabelInputError({"form": "The label sent by the page is not JSON."}) from None
        if not isinstance(label, dict):
            raise LabelInputError({"form": "The label sent by the page is not an object."})
        return label
    return get_kind(kind).label_from_post(data, responses, config)


def post_from_label(kind: str, label: dict, responses: list[dict]) -> dict:
    """The form fields that show a stored label (in display terms), to reopen it."""
    return get_kind(kind).post_from_label(label, responses)


def form_field_for(kind: str, field: str, responses: list[dict], config: dict) -> str:
    """The form field that a kind's error (`label.strength`, `label.spans[2].label`, ...) is
    about, to show the message next to it; "form" when none fits."""
    return get_kind(kind).form_field_for(field.removeprefix("label."), responses, config)


def kind_context(
    kind: str, config: dict, responses: list[dict], values, errors: dict, *, images: bool = False
) -> dict:
    """What a kind's form partial (templates/annotate/kinds/<kind>.html) shows: the responses in
    display order, each with its letter, rendered Markdown and its fields' values and errors;
    plus the kind's submit buttons for the page around it. `images`: the project loads images."""
    from .rendering import is_plain_text, render_markdown, render_raw

    kind = get_kind(kind)
    shown = []
    for i, r in enumerate(responses):
        html = render_markdown(r["text"], images=images)
        # Text shown as plain text needs no raw copy (half the page for a 1 MB response).
        raw = None if is_plain_text(html) else render_raw(r["text"])
        shown.append({"letter": response_letter(i), "response": r, "html": html, "raw": raw})
    context = kind.form_context(shown, config, responses, values, errors)
    return {
        **context,
        "submit_words": kind.submit_words,
        "answers_no_errors": kind.answers_no_errors,
    }


def letter_of(responses: list[dict]) -> dict[str, str]:
    """Response id → the letter the page calls it by (A, B, ... in display order)."""
    return {r["id"]: response_letter(i) for i, r in enumerate(responses)}


def label_summary(kind: str, label: dict, letters: dict[str, str]) -> str:
    """A label in a few words, for the list of recent labels (label in display terms)."""
    return get_kind(kind).label_summary(label, letters)
