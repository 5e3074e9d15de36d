"""The routing settings form. It parses types only: routing.services.policy_save validates the
values (the policy its parameters), and its ServiceError comes back on the field it names."""

from __future__ import annotations

from django import forms

from annotate.models import Project

from . import selectors
from .models import RoutingPolicy
from .policies import POLICIES

ANY_STEP = {"step": "any"}


def _users_of(param: str) -> str:
    return ", ".join(p.title for p in POLICIES.values() if param in p.params)


# Every policy parameter once, as a form field; a policy reads only its own.
PARAMS = list(dict.fromkeys(name for p in POLICIES.values() for name in p.params))
PARAM_HELP = {
    "fraction": "The share of items sent to people (0 to 1).",
    "max_margin": "A reward-model margin below which people label the item.",
    "min_jury_agreement": "A jury's agreement (0 to 1) below which people label the item.",
}


class RoutingForm(forms.Form):
    policy = forms.ChoiceField(choices=selectors.policy_choices)
    judge = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="—",
        label="Router judge",
        help_text="Whose verdicts the router reads and who labels what it routes to judges.",
    )
    budget_labels = forms.IntegerField(
        required=False,
        max_value=2**31 - 1,
        label="Human budget (labels)",
        help_text="An item sent to people costs the project's overlap in labels. Empty: no cap.",
    )
    budget_share = forms.FloatField(
        required=False,
        label="Human budget (share of items)",
        help_text="0 to 1. Empty: no cap. With both, the smaller cap holds.",
        widget=forms.NumberInput(attrs=ANY_STEP),
    )
    audit_share = forms.FloatField(
        initial=0.1,
        label="Audit share",
        help_text="A random slice labelled by both people and judges, whatever the policy "
        "(it counts against the human budget).",
        widget=forms.NumberInput(attrs=ANY_STEP),
    )
    seed = forms.IntegerField(
        initial=0, help_text="Fixes the draws of the audit slice and the random policy."
    )

    def __init__(self, data=None, *, project: Project, row: RoutingPolicy):
        super().__init__(data, initial=_initial(row))
        self.fields["judge"].queryset = selectors.router_judges(project)
        for name in PARAMS:
            self.fields[name] = forms.FloatField(
                required=False,
                initial=_param_initial(row, name),
                help_text=f"{PARAM_HELP.get(name, '')} Read by: {_users_of(name)}. "
                "Empty: the default.",
                widget=forms.NumberInput(attrs=ANY_STEP),
            )

    def data_for_service(self) -> dict:
        """The cleaned values as routing.services.policy_save takes them: the chosen policy's
        parameters only, those left empty taking its defaults."""
        data = dict(self.cleaned_data)
        policy = POLICIES[data["policy"]]
        data["params"] = {name: data[name] for name in policy.params if data.get(name) is not None}
        for name in PARAMS:
            data.pop(name, None)
        return data


def _initial(row: RoutingPolicy) -> dict:
    return {
        "policy": row.policy,
        "judge": row.judge_id,
        "budget_labels": row.budget_labels,
        "budget_share": row.budget_share,
        "audit_share": row.audit_share,
        "seed": row.seed,
    }


def _param_initial(row: RoutingPolicy, name: str) -> float:
    if name in row.params:
        return row.params[name]
    return next(p.params[name][0] for p in POLICIES.values() if name in p.params)
