"""A project's routing policy, its human budget, and the decision recorded on each item.

The route itself is a column of the item (annotate.Item.route), which the assignment engine's
next-item index filters on; this app decides it (services.py) and keeps why (RouteDecision).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from annotate.models import Item, Judge, Project


class RoutingPolicy(models.Model):
    """How a project's items are split between people and judges, and how many people may get.

    The human budget caps the items routed to people (route "human" or "both", gold left out):
    `budget_labels` human labels (an item costs the project's overlap) and/or `budget_share` of
    the project's items; unset, there is no cap. The audit slice (`audit_share` of the items,
    drawn by hash) is labelled by both, always, and counts against the budget.
    """

    class Name(models.TextChoices):
        ALL_HUMAN = "all_human", "All to people"
        ALL_JUDGE = "all_judge", "All to judges"
        RANDOM = "random", "Random fraction to people"
        CONFIDENCE = "confidence", "People get what the judges are unsure of"
        LEARNED = "learned", "Learned router: people get what the judges likely get wrong"

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="routing")
    policy = models.CharField(max_length=16, choices=Name.choices, default=Name.ALL_HUMAN)
    params = models.JSONField(default=dict, blank=True, help_text="Validated by the policy.")
    judge = models.ForeignKey(
        Judge,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The judge whose verdicts the router reads and who labels what it routes.",
    )
    budget_labels = models.PositiveIntegerField(null=True, blank=True)
    budget_share = models.FloatField(null=True, blank=True)
    audit_share = models.FloatField(default=0.1)
    seed = models.IntegerField(default=0, help_text="Draws of the audit slice and random policy.")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)
    routed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(audit_share__gte=0, audit_share__lte=1), name="routing_audit_0_1"
            ),
            models.CheckConstraint(
                condition=Q(budget_share__isnull=True)
                | Q(budget_share__gte=0, budget_share__lte=1),
                name="routing_budget_share_0_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project} routing ({self.policy})"


class RouteDecision(models.Model):
    """The latest routing decision on an item and why: the policy, its risk score (higher: more
    likely the judges get it wrong) and the features it read."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="route_decision")
    route = models.CharField(max_length=8, choices=Item.Route.choices)
    policy = models.CharField(max_length=16, choices=RoutingPolicy.Name.choices)
    risk = models.FloatField(null=True, blank=True)
    features = models.JSONField(default=dict, blank=True)
    reason = models.CharField(max_length=300)
    audit = models.BooleanField(default=False)
    promoted = models.BooleanField(
        default=False, help_text="Sent to people after the judges' verdict came back unsure."
    )
    trigger = models.CharField(max_length=100, blank=True)
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-decided_at", "-id"]

    def __str__(self) -> str:
        return f"item {self.item_id} → {self.route} ({self.policy})"

    def read_features(self) -> dict:
        """What the policy read: the decision's features, with the item's stored text features
        where it read those (features["text_features"] names their version; a row recomputed
        since by another version is not shown as if read)."""
        from .policies.base import TEXT_FEATURES

        version = self.features.get(TEXT_FEATURES)
        stored = getattr(self.item, "text_features", None) if version is not None else None
        if stored is None or stored.version != version:
            return self.features
        text = {n: v for n, v in stored.values.items() if not isinstance(v, list)}
        return {**text, **self.features}


class RouterModel(models.Model):
    """A learned router of a project: a scikit-learn classifier of P(the judge's label disagrees
    with the people's), trained on the items both labelled (routing/learning.py). The fitted
    model is a joblib file under MEDIA_ROOT (`model_path`), never in the database; the row keeps
    its held-out quality (AUC, the routing curve beside random, confidence and the oracle), the
    feature names its columns stand for and the data it was trained on."""

    class Status(models.TextChoices):
        DONE = "done", "Trained"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="routers")
    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="routers")
    status = models.CharField(max_length=8, choices=Status.choices)
    error = models.TextField(blank=True)
    trained_at = models.DateTimeField(default=timezone.now)
    n_train = models.PositiveIntegerField(default=0)
    n_test = models.PositiveIntegerField(default=0)
    auc = models.FloatField(null=True, blank=True, help_text="Held-out ROC AUC of P(disagrees).")
    curve = models.JSONField(
        default=dict, blank=True, help_text="Held-out agreement by share to people, per ranking."
    )
    feature_names = models.JSONField(default=list, blank=True)
    data = models.JSONField(
        default=dict,
        blank=True,
        help_text="The double-labelled items it learnt from: count, first/last item id and date.",
    )
    params = models.JSONField(default=dict, blank=True, help_text="Seed, test share, model.")
    model_path = models.CharField(max_length=500, blank=True, help_text="Under MEDIA_ROOT.")

    class Meta:
        ordering = ["-trained_at", "-id"]

    def __str__(self) -> str:
        return f"{self.project} router {self.pk} ({self.status})"


class ResponseSimilarity(models.Model):
    """How alike an item's responses are (mean cosine of MiniLM embeddings over its pairs of
    responses): computed on the training worker, which has torch, and read by routing passes,
    which have not."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="+")
    value = models.FloatField()
    computed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"item {self.item_id} responses' similarity {self.value:.3f}"


class ItemTextFeatures(models.Model):
    """The router's features of an item's own text (routing.learning.text_features: lengths,
    code, questions, word overlap of the responses): an item's text never changes, so they are
    computed once, when the judges' verdicts on it are written (routing.signals), and a routing
    pass reads these numbers instead of the text. `version` is learning.TEXT_FEATURES_VERSION
    when computed: a row of another version is computed again."""

    item = models.OneToOneField(
        Item, on_delete=models.CASCADE, primary_key=True, related_name="text_features"
    )
    version = models.PositiveSmallIntegerField()
    values = models.JSONField()

    def __str__(self) -> str:
        return f"item {self.item_id} text features v{self.version}"
