"""Request and response shapes of the routing API. They validate types and shape answers; the
values are judged by routing.services, whose refusals come back as 400s on the field they name."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotate.models import Item
from feedback_api.fields import NumberField
from feedback_api.filters import QuerySerializer

from .models import RouteDecision, RoutingPolicy
from .policies import POLICIES

# A primary key (BigAutoField): larger ids are refused with a 400, not sent to the database.
ID_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
MONEY = {"max_digits": 12, "decimal_places": 6}


class JudgeSpendSerializer(serializers.Serializer):
    judge = serializers.CharField(help_text="The router judge's name.")
    budget_usd = serializers.DecimalField(**MONEY)
    spent_usd = serializers.DecimalField(**MONEY)
    left_usd = serializers.DecimalField(**MONEY, help_text="Budget less spent and reserved.")


class RouteCountsSerializer(serializers.Serializer):
    human = serializers.IntegerField()
    judge = serializers.IntegerField()
    both = serializers.IntegerField()
    pending = serializers.IntegerField()


class RoutingBudgetSerializer(serializers.Serializer):
    """routing.services.budget: the same numbers as the routing page."""

    items = serializers.IntegerField(help_text="Items of the project, gold left out.")
    by_route = RouteCountsSerializer()
    people_items_allowed = serializers.IntegerField(allow_null=True, help_text="null: no cap.")
    people_items_used = serializers.IntegerField()
    people_items_left = serializers.IntegerField(allow_null=True)
    labels_allowed = serializers.IntegerField(allow_null=True, help_text="null: no cap.")
    labels_used = serializers.IntegerField()
    labels_left = serializers.IntegerField(allow_null=True)
    judge_spend = JudgeSpendSerializer(required=False, help_text="Only with a router judge.")


class PolicyInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    params = serializers.DictField(
        child=serializers.FloatField(), help_text="Its parameters and their defaults."
    )


class RoutingSerializer(serializers.ModelSerializer):
    updated_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    params = serializers.DictField(child=serializers.FloatField())
    budget = serializers.SerializerMethodField()
    policies = serializers.SerializerMethodField()

    class Meta:
        model = RoutingPolicy
        fields = [
            "policy",
            "params",
            "judge",
            "budget_labels",
            "budget_share",
            "audit_share",
            "seed",
            "updated_by",
            "updated_at",
            "routed_at",
            "budget",
            "policies",
        ]
        read_only_fields = fields

    @extend_schema_field(RoutingBudgetSerializer)
    def get_budget(self, row) -> dict:
        return RoutingBudgetSerializer(self.context["budget"]).data

    @extend_schema_field(PolicyInfoSerializer(many=True))
    def get_policies(self, row) -> list[dict]:
        return PolicyInfoSerializer(
            [
                {"name": p.name, "title": p.title, "params": {k: v[0] for k, v in p.params.items()}}
                for p in POLICIES.values()
            ],
            many=True,
        ).data


class RoutingWriteSerializer(serializers.Serializer):
    """The settings to set; omitted ones keep their current values (a new policy without
    params takes its defaults). Ranges and cross-field rules are the service's."""

    policy = serializers.ChoiceField(choices=RoutingPolicy.Name.choices, required=False)
    params = serializers.DictField(
        child=NumberField(),
        required=False,
        help_text='The policy\'s parameters: random {"fraction"}; confidence and learned '
        '{"max_margin", "min_jury_agreement"}. Omitted ones take their defaults.',
    )
    judge = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=ID_MAX,
        help_text="The router judge's id (an active judge of the project).",
    )
    budget_labels = serializers.IntegerField(
        required=False, allow_null=True, max_value=INT_MAX, help_text="null: no cap."
    )
    budget_share = NumberField(required=False, allow_null=True, help_text="0 to 1; null: no cap.")
    audit_share = NumberField(required=False)
    seed = serializers.IntegerField(required=False)


class RouteStartedSerializer(serializers.Serializer):
    task_id = serializers.CharField(help_text="The Celery task that will route the project.")
    status = serializers.CharField()


class RouterSerializer(serializers.Serializer):
    """A learned router as learning.summary describes it."""

    id = serializers.IntegerField(allow_null=True, default=None)
    status = serializers.CharField(allow_null=True, default=None)
    error = serializers.CharField(allow_blank=True, default="")
    judge = serializers.CharField(allow_null=True, default=None)
    trained_at = serializers.DateTimeField(allow_null=True, default=None)
    n_train = serializers.IntegerField(default=0, help_text="Items it was trained on.")
    n_test = serializers.IntegerField(default=0, help_text="Held-out items it was evaluated on.")
    auc = serializers.FloatField(
        allow_null=True, default=None, help_text="Held-out AUC of P(the judge disagrees)."
    )
    curve = serializers.DictField(
        default=dict,
        help_text="Held-out agreement with the people's labels at each share routed to people: "
        "shares, learned, random, confidence, oracle.",
    )
    features = serializers.ListField(child=serializers.CharField(), default=list)
    data = serializers.DictField(default=dict, help_text="The items it learnt from.")
    model = serializers.CharField(
        default="", help_text="The model chosen by cross-validation on its training items."
    )
    cv_auc = serializers.DictField(
        child=serializers.FloatField(),
        default=dict,
        help_text="Each candidate model's cross-validated AUC on the training items.",
    )


class DecisionSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(source="item.external_id", read_only=True)
    features = serializers.DictField(source="read_features", help_text="What the policy read.")

    class Meta:
        model = RouteDecision
        fields = [
            "id",
            "item",
            "external_id",
            "route",
            "policy",
            "risk",
            "reason",
            "features",
            "audit",
            "promoted",
            "trigger",
            "decided_at",
        ]
        read_only_fields = fields


class DecisionFilterSerializer(QuerySerializer):
    route = serializers.ChoiceField(choices=Item.Route.choices, required=False)


class ItemDecisionSerializer(serializers.Serializer):
    """An item's route (annotate's column, what the assignment engine obeys) and the routing
    decision that set it, null when the router never decided it."""

    external_id = serializers.CharField()
    route = serializers.ChoiceField(choices=Item.Route.choices)
    route_decision = serializers.SerializerMethodField()

    @extend_schema_field(DecisionSerializer(allow_null=True))
    def get_route_decision(self, item) -> dict | None:
        decision = getattr(item, "route_decision", None)
        return None if decision is None else DecisionSerializer(decision).data


class ReportSerializer(serializers.Serializer):
    """routing.selectors.routing_report: the numbers of the report page and its CSV."""

    judge = serializers.CharField(allow_null=True, help_text="The router judge's name.")
    items = serializers.IntegerField(help_text="Items with people's labels and a verdict.")
    judge_agrees = serializers.IntegerField(help_text="Of those, where the judge agrees.")
    shares = serializers.ListField(child=serializers.FloatField())
    budget_share = serializers.FloatField(
        allow_null=True, help_text="The share the human budget allows; null: no cap."
    )
    curves = serializers.DictField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="Per policy (random, confidence, learned once trained, oracle): agreement "
        "with the people's labels at each share; null when there are no items.",
    )
