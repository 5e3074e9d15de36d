"""Request and response shapes of the judges API. They validate types and shape answers; the
values are judged by judges.services, whose refusals come back as 400s on the field they name."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotate.models import Judge
from feedback_api.fields import NumberField, TextField
from feedback_api.serializers import storable_json

from .models import JudgeRun, Judgment, Verdict
from .selectors import budget_left, run_progress

MONEY = {"max_digits": 12, "decimal_places": 6}
# A primary key (BigAutoField): larger ids are refused with a 400, not sent to the database.
ID_MAX = 2**63 - 1


class JudgeSerializer(serializers.ModelSerializer):
    """A judge. `api_key_env` is in the answer only for the project's admins (the context's
    `show_key`), hence not required in the schema."""

    api_key_env = serializers.CharField(
        required=False,
        help_text="The name of the workers' environment variable with the key (admins only).",
    )
    budget_left_usd = serializers.SerializerMethodField()
    members = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Judge
        fields = [
            "id",
            "name",
            "backend",
            "model_name",
            "base_url",
            "api_key_env",
            "temperature",
            "max_tokens",
            "timeout_s",
            "structured_output",
            "max_concurrency",
            "requests_per_minute",
            "tokens_per_minute",
            "price_in_per_mtok",
            "price_out_per_mtok",
            "budget_usd",
            "spent_usd",
            "reserved_usd",
            "budget_left_usd",
            "passes",
            "system_prompt",
            "prompt_template",
            "use_reference",
            "reward_model_id",
            "tie_margin",
            "members",
            "active",
            "created_at",
        ]
        read_only_fields = [f for f in fields if f != "api_key_env"]

    @extend_schema_field(serializers.DecimalField(**MONEY))
    def get_budget_left_usd(self, judge: Judge) -> str:
        return f"{budget_left(judge):.6f}"

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("show_key"):
            data.pop("api_key_env", None)
        return data


class JudgeWriteSerializer(serializers.Serializer):
    """The settings to set: any subset when changing a judge; `name` (and `model_name` for an
    endpoint) when creating one. Ranges and cross-field rules are the service's."""

    name = TextField(max_length=100, required=False)
    backend = serializers.ChoiceField(choices=Judge.Backend.choices, required=False)
    model_name = TextField(max_length=200, required=False, allow_blank=True)
    base_url = TextField(max_length=500, required=False, allow_blank=True)
    api_key_env = TextField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text="The NAME of the workers' environment variable with the key, never the key.",
    )
    temperature = NumberField(required=False)
    max_tokens = serializers.IntegerField(required=False)
    timeout_s = NumberField(required=False)
    structured_output = serializers.ChoiceField(
        choices=Judge.StructuredOutput.choices, required=False
    )
    max_concurrency = serializers.IntegerField(required=False)
    requests_per_minute = serializers.IntegerField(required=False, allow_null=True)
    tokens_per_minute = serializers.IntegerField(required=False, allow_null=True)
    price_in_per_mtok = serializers.DecimalField(required=False, **MONEY)
    price_out_per_mtok = serializers.DecimalField(required=False, **MONEY)
    budget_usd = serializers.DecimalField(required=False, **MONEY)
    passes = serializers.IntegerField(required=False, allow_null=True)
    system_prompt = TextField(required=False, allow_blank=True, trim_whitespace=False)
    prompt_template = TextField(required=False, allow_blank=True, trim_whitespace=False)
    use_reference = serializers.BooleanField(required=False)
    reward_model_id = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=ID_MAX
    )
    tie_margin = NumberField(required=False)
    members = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX),
        required=False,
        help_text="Jury: member judges' ids.",
    )
    active = serializers.BooleanField(required=False)

    def validate(self, attrs):
        for key, value in attrs.items():
            if isinstance(value, str):
                storable_json(value, key)
        return attrs


class PreviewRequestSerializer(serializers.Serializer):
    item = TextField(
        required=False, allow_blank=True, help_text="An item's external id; empty: the first."
    )


class MessageSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()


class PreviewPassSerializer(serializers.Serializer):
    pass_index = serializers.IntegerField(source="pass")
    order = serializers.ListField(child=serializers.CharField(), help_text="Response ids shown.")
    messages = MessageSerializer(many=True)


class PreviewSerializer(serializers.Serializer):
    item = serializers.CharField(help_text="The item's external id.")
    passes = PreviewPassSerializer(many=True)


# Runs ---------------------------------------------------------------------------------------


class RunCreateSerializer(serializers.Serializer):
    judges = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX), min_length=1
    )
    purpose = serializers.ChoiceField(
        choices=JudgeRun.Purpose.choices,
        default=JudgeRun.Purpose.LABEL,
        help_text="label: the judges label the items; tags: an LLM judge tags each item's prompt "
        "(subject, expertise, safety concern, intents, open-endedness, format constraints), "
        "features for the learned router.",
    )
    selection = serializers.ChoiceField(choices=JudgeRun.Selection.choices)
    external_ids = serializers.ListField(
        child=TextField(max_length=255), required=False, default=list
    )
    limit = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=ID_MAX)
    metadata_filter = serializers.JSONField(
        required=False,
        default=dict,
        help_text='Only items whose metadata has these values: {"domain": "math", "source.name": '
        '"arena"} (text, numbers, true or false; "a.b" is field b inside a).',
    )


class VerdictCountsSerializer(serializers.Serializer):
    agreed = serializers.IntegerField()
    inconsistent = serializers.IntegerField()
    failed = serializers.IntegerField()


class BudgetSerializer(serializers.Serializer):
    judge = serializers.IntegerField()
    name = serializers.CharField()
    run_cost_usd = serializers.DecimalField(**MONEY, help_text="What this run's passes cost.")
    budget_usd = serializers.DecimalField(**MONEY)
    spent_usd = serializers.DecimalField(**MONEY)
    reserved_usd = serializers.DecimalField(**MONEY, help_text="Held by calls in flight.")
    left_usd = serializers.DecimalField(**MONEY)


class FailureSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item = serializers.CharField(help_text="The item's external id.")
    judge = serializers.CharField(help_text="The judge's name.")
    pass_index = serializers.IntegerField()
    error = serializers.CharField()
    finished_at = serializers.DateTimeField(allow_null=True)


class RunProgressSerializer(serializers.Serializer):
    """judges.selectors.run_progress: the same numbers as the run's page."""

    status = serializers.ChoiceField(choices=JudgeRun.Status.choices)
    items = serializers.IntegerField()
    passes_total = serializers.IntegerField()
    passes_done = serializers.IntegerField()
    passes_failed = serializers.IntegerField()
    passes_pending = serializers.IntegerField()
    percent = serializers.IntegerField()
    verdicts = VerdictCountsSerializer()
    judgments_per_s = serializers.FloatField(
        allow_null=True, help_text="Finished passes per second since the run started."
    )
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost_usd = serializers.DecimalField(**MONEY)
    parse_failure_rate = serializers.FloatField(
        allow_null=True, help_text="Unparseable replies over finished passes."
    )
    budgets = BudgetSerializer(many=True)
    failures = FailureSerializer(many=True, help_text="The last 20, newest first.")


class RunSerializer(serializers.ModelSerializer):
    judges = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = JudgeRun
        fields = [
            "id",
            "status",
            "purpose",
            "selection",
            "external_ids",
            "metadata_filter",
            "limit",
            "judges",
            "items",
            "passes_total",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class RunDetailSerializer(RunSerializer):
    progress = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "progress"]
        read_only_fields = fields

    @extend_schema_field(RunProgressSerializer)
    def get_progress(self, run: JudgeRun) -> dict:
        return RunProgressSerializer(run_progress(run)).data


class VerdictSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(source="item.external_id", read_only=True)

    class Meta:
        model = Verdict
        fields = [
            "id",
            "item",
            "external_id",
            "judge",
            "prompt_version",
            "status",
            "label",
            "agreement",
            "annotation",
            "created_at",
        ]
        read_only_fields = fields


class JudgmentSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(source="item.external_id", read_only=True)

    class Meta:
        model = Judgment
        fields = [
            "id",
            "item",
            "external_id",
            "judge",
            "pass_index",
            "prompt_version",
            "order",
            "status",
            "attempts",
            "label",
            "raw_output",
            "error",
            "response_model",
            "tokens_in",
            "tokens_out",
            "cost_usd",
            "latency_ms",
            "finished_at",
        ]
        read_only_fields = fields
