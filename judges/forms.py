"""The judge form and the start-a-run form. They parse types only: judges.services validates the
values, and its ServiceError comes back on the field it names."""

from __future__ import annotations

import json

from django import forms

from annotate.kinds import get_kind
from annotate.models import Judge, Project

from .models import JudgeRun

ANY_STEP = {"step": "any"}


class JudgeForm(forms.Form):
    name = forms.CharField(max_length=100)
    backend = forms.ChoiceField(choices=Judge.Backend.choices)
    model_name = forms.CharField(
        max_length=200, required=False, help_text="The model the endpoint serves, e.g. gpt-4o."
    )
    base_url = forms.CharField(
        max_length=500,
        required=False,
        help_text="The endpoint's base URL; empty for the provider's own.",
    )
    api_key_env = forms.CharField(
        max_length=100,
        required=False,
        label="API key variable",
        help_text="The NAME of the environment variable on the workers that holds the key "
        "(e.g. OPENAI_API_KEY), never the key itself.",
    )
    temperature = forms.FloatField(initial=0.0, widget=forms.NumberInput(attrs=ANY_STEP))
    max_tokens = forms.IntegerField(initial=1024)
    timeout_s = forms.FloatField(
        initial=60.0, label="Timeout (s)", widget=forms.NumberInput(attrs=ANY_STEP)
    )
    structured_output = forms.ChoiceField(choices=Judge.StructuredOutput.choices)
    max_concurrency = forms.IntegerField(
        initial=8, help_text="Calls in flight at once, across every worker."
    )
    requests_per_minute = forms.IntegerField(required=False, help_text="Empty: no limit.")
    tokens_per_minute = forms.IntegerField(required=False, help_text="Empty: no limit.")
    price_in_per_mtok = forms.DecimalField(
        initial=0, label="Price in (USD / M tokens)", widget=forms.NumberInput(attrs=ANY_STEP)
    )
    price_out_per_mtok = forms.DecimalField(
        initial=0, label="Price out (USD / M tokens)", widget=forms.NumberInput(attrs=ANY_STEP)
    )
    budget_usd = forms.DecimalField(
        initial=10,
        label="Budget (USD)",
        help_text="No call starts that could take the spend past it.",
        widget=forms.NumberInput(attrs=ANY_STEP),
    )
    passes = forms.IntegerField(
        required=False, help_text="Display orders per item (1 to 4); empty: the kind's default."
    )
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))
    prompt_template = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 14}),
        help_text="Django template syntax: {{ prompt }}, {% for r in responses %}{{ r.letter }} "
        "{{ r.text }}{% endfor %}, {{ reference }}, {{ guidelines }}, {{ metadata }}.",
    )
    use_reference = forms.BooleanField(
        required=False, initial=True, help_text="Show the item's reference answer when it has one."
    )
    reward_model_id = forms.TypedChoiceField(
        coerce=int,
        empty_value=None,
        required=False,
        label="Reward model",
        help_text="For the reward_model backend: a pairwise or listwise model of this project.",
    )
    members = forms.ModelMultipleChoiceField(
        queryset=Judge.objects.none(),
        required=False,
        help_text="For the jury backend: two or more of this project's other judges.",
    )
    active = forms.BooleanField(required=False, initial=True)

    def __init__(self, data=None, *, project: Project, judge: Judge | None = None):
        from rewards.selectors import scoring_models_for

        super().__init__(data, initial=_initial(judge) if judge is not None else None)
        kind = self.kind = get_kind(project.kind)
        # The kind's default prompts, to edit from: the same text keeps the prompt version.
        self.fields["system_prompt"].initial = kind.judge_system
        self.fields["prompt_template"].initial = kind.judge_template
        models = scoring_models_for(project)
        self.fields["reward_model_id"].choices = [("", "—")] + [
            (m.pk, f"v{m.version} · {m.objective}") for m in models
        ]
        others = Judge.objects.filter(project=project).exclude(backend=Judge.Backend.JURY)
        if judge is not None:
            others = others.exclude(pk=judge.pk)
        self.fields["members"].queryset = others.order_by("name")

    def clean_system_prompt(self) -> str:
        return self._prompt("system_prompt", self.kind.judge_system)

    def clean_prompt_template(self) -> str:
        return self._prompt("prompt_template", self.kind.judge_template)

    def _prompt(self, name: str, default: str) -> str:
        # Browsers send a textarea's lines as CRLF: the untouched default must stay the default
        # (same prompt version, and empty so that it follows the kind) and prompts use LF.
        text = self.cleaned_data[name].replace("\r\n", "\n")
        return "" if text.strip() == default.strip() else text

    def data_for_service(self) -> dict:
        """The cleaned values as judges.services.judge_save takes them."""
        data = dict(self.cleaned_data)
        data["members"] = list(data["members"])
        return data


def _initial(judge: Judge) -> dict:
    initial = {name: getattr(judge, name) for name in JudgeForm.base_fields if name != "members"}
    initial["members"] = list(judge.members.all())
    # Empty prompts follow the kind's default: the form then shows that default.
    for name in ("system_prompt", "prompt_template"):
        if not initial[name]:
            del initial[name]
    return initial


class RunStartForm(forms.Form):
    judges = forms.ModelMultipleChoiceField(
        queryset=Judge.objects.none(), widget=forms.CheckboxSelectMultiple
    )
    purpose = forms.ChoiceField(
        choices=JudgeRun.Purpose.choices,
        initial=JudgeRun.Purpose.LABEL,
        required=False,
        widget=forms.RadioSelect,
    )
    selection = forms.ChoiceField(
        choices=JudgeRun.Selection.choices,
        initial=JudgeRun.Selection.UNLABELED,
        widget=forms.RadioSelect,
    )
    external_ids = forms.CharField(
        required=False,
        label="External ids",
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text='For "Items by external id": one per line (or separated by commas).',
    )
    metadata_filter = forms.CharField(
        required=False,
        label="Metadata filter",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Only items whose metadata has these values, one per line: domain = math "
        '(a.b = x for field b inside a; 3, true and "3" are a number, a boolean and text).',
    )
    limit = forms.IntegerField(
        required=False, min_value=1, help_text="At most this many items (the first by id)."
    )

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["judges"].queryset = Judge.objects.filter(project=project, active=True)

    def clean_metadata_filter(self) -> dict:
        """Lines of `field = value`: a value that reads as a JSON number, true, false or a
        quoted text is that, anything else the text as written."""
        conditions = {}
        for number, line in enumerate(self.cleaned_data["metadata_filter"].splitlines(), 1):
            if not line.strip():
                continue
            field, equals, value = line.partition("=")
            if not equals or not field.strip():
                raise forms.ValidationError(f"line {number}: expected field = value")
            value = value.strip()
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = value
            conditions[field.strip()] = (
                parsed if isinstance(parsed, str | int | float | bool) else value
            )
        return conditions

    def clean_purpose(self) -> str:
        return self.cleaned_data["purpose"] or JudgeRun.Purpose.LABEL

    def clean_external_ids(self) -> list[str]:
        text = self.cleaned_data["external_ids"]
        return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]
