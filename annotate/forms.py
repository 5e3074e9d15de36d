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
