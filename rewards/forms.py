"""The start-a-training-run form: one field per TrainConfig field, with its help text.

The form only parses types; TrainConfig.validate (through the service) judges the values, and its
errors come back on the fields they name.
"""

from __future__ import annotations

from dataclasses import fields

from django import forms

from feedback_api.models import DatasetVersion

from .config import TrainConfig
from .models import OBJECTIVE_FOR_FORMAT, Objective

# Shown first; the rest of TrainConfig's fields go under "Advanced".
MAIN_FIELDS = (
    "dataset_version",
    "objective",
    "base_model",
    "epochs",
    "learning_rate",
    "batch_size",
    "max_length",
    "seed",
    "eval_split",
    "precision",
    "checkpoint_steps",
)


def _field_for(config_field) -> forms.Field:
    help_text = config_field.metadata.get("help", "")
    default = config_field.default
    label = config_field.name.replace("_", " ").capitalize()
    common = {"label": label, "help_text": help_text, "initial": default}
    if config_field.metadata.get("choices"):
        choices = [(c, c) for c in config_field.metadata["choices"]]
        return forms.ChoiceField(choices=choices, **common)
    if config_field.name == "base_model":
        # The choices come as a <datalist> (a folder under an allowed root may be typed too).
        attrs = {"placeholder": "all-MiniLM-L6-v2 (packaged, offline)", "size": 50}
        widget = forms.TextInput(attrs={**attrs, "list": "base-model-choices"})
        return forms.CharField(required=False, max_length=500, widget=widget, **common)
    if isinstance(default, bool):
        return forms.BooleanField(required=False, **common)
    if isinstance(default, str):
        return forms.CharField(required=False, **common)
    if isinstance(default, int):
        return forms.IntegerField(**common)
    # Floats such as 5e-05 must not be rounded by the browser's default step of 1.
    return forms.FloatField(widget=forms.NumberInput(attrs={"step": "any"}), **common)


class TrainingRunForm(forms.Form):
    dataset_version = forms.TypedChoiceField(
        coerce=int,
        label="Dataset version",
        help_text="A finished dataset version of this project; its train split trains, its test "
        "split evaluates.",
    )
    objective = forms.ChoiceField(choices=Objective.choices)

    def __init__(
        self,
        *args,
        versions: list[DatasetVersion],
        version=None,
        base_models: list[tuple[str, str]] = (),
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        # (value, label) for the base model's datalist: rewards.base_models.base_model_choices.
        self.base_models = [(value, label) for value, label in base_models if value]
        self.versions = {v.number: v for v in versions}
        self.fields["dataset_version"].choices = [
            (v.number, f"v{v.number} · {v.get_format_display()} · {v.train_rows} train rows")
            for v in versions
        ]
        for config_field in fields(TrainConfig):
            if config_field.name == "objective":
                self.fields["objective"].help_text = config_field.metadata.get("help", "")
            else:
                self.fields[config_field.name] = _field_for(config_field)
        if version is not None:
            self.fields["dataset_version"].initial = version.number
            self.fields["objective"].initial = OBJECTIVE_FOR_FORMAT.get(version.format)

    def main_fields(self):
        return [self[name] for name in MAIN_FIELDS]

    def advanced_fields(self):
        return [self[name] for name in self.fields if name not in MAIN_FIELDS]

    def clean(self):
        data = super().clean()
        version = self.versions.get(data.get("dataset_version"))
        objective = data.get("objective")
        # Each export format trains exactly one objective: say so on the field, before a run.
        if version and objective and OBJECTIVE_FOR_FORMAT.get(version.format) != objective:
            wanted = OBJECTIVE_FOR_FORMAT.get(version.format)
            self.add_error(
                "objective",
                f"A {version.format} dataset version trains the {wanted} objective.",
            )
        return data

    def chosen_version(self) -> DatasetVersion:
        return self.versions[self.cleaned_data["dataset_version"]]

    def config(self) -> dict:
        """The TrainConfig fields as a dict for training_run_create."""
        names = [f.name for f in fields(TrainConfig)]
        return {name: self.cleaned_data[name] for name in names}
