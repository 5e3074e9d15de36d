"""The annotation domain: projects, who works on them, what is labeled, and each label's source."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Case, Q, When
from django.db.models.functions import Cast
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from .kinds import KINDS


class LabelText(models.Func):
    """A top-level key of an annotation's label as text; NULL when it is missing or JSON null,
    on every database (KT gives the text 'null' on SQLite). For the generated columns."""

    output_field = models.TextField()

    def __init__(self, key: str):
        if not key.isidentifier():
            raise ValueError(f"not a label key: {key!r}")
        super().__init__(models.F("label"))
        self.key = key

    def as_sql(self, compiler, connection, **extra):
        template = f"(%(expressions)s ->> '{self.key}')"  # PostgreSQL's jsonb
        return super().as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler, connection, **extra):
        template = f"JSON_EXTRACT(%(expressions)s, '$.{self.key}')"
        return super().as_sql(compiler, connection, template=template, **extra)


# Project.kind's choices come from the registry of annotate/kinds (Kind.SPANS is "spans",
# ...): a new kind registered there is a choice here (a choices-only migration, no schema change).
Kind = models.TextChoices(
    "Kind", [(name.upper(), (name, kind.title)) for name, kind in KINDS.items()]
)


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    RESEARCHER = "researcher", "Researcher"
    ADMIN = "admin", "Admin"


# Each role can do everything the roles before it can.
ROLE_RANK = {Role.ANNOTATOR: 1, Role.RESEARCHER: 2, Role.ADMIN: 3}


class ProjectQuerySet(models.QuerySet):
    def for_user(self, user, role: str = Role.ANNOTATOR) -> ProjectQuerySet:
        """Projects where the user has at least `role` (all of them for a superuser)."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self.all()
        # One membership per (project, user): no duplicates to remove.
        enough = [r for r, rank in ROLE_RANK.items() if rank >= ROLE_RANK[role]]
        return self.filter(memberships__user=user, memberships__role__in=enough)


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    config = models.JSONField(
        default=dict, blank=True, help_text="Kind settings, validated by the kind."
    )
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Human labels wanted per item.")
    gold_rate = models.FloatField(
        default=0.1,
        help_text="Share of assignments that are gold items (0 to 1), when there are any.",
    )
    lease_minutes = models.PositiveIntegerField(
        default=30, help_text="Minutes an annotator holds an item before it returns to the pool."
    )
    new_item_route = models.CharField(
        max_length=8,
        default="human",
        help_text="The route imported items start with: people, or waiting for the router "
        "(kept by the routing app from the project's policy).",
    )
    load_images = models.BooleanField(
        default=False,
        help_text="Load images in responses and guidelines from any http(s) host (off: each "
        "image is a placeholder naming its host).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="project_overlap_gte_1"),
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0, gold_rate__lte=1), name="project_gold_rate_0_1"
            ),
            models.CheckConstraint(condition=Q(lease_minutes__gte=1), name="project_lease_gte_1"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = slugify(self.name)[:200] or "project"
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("annotate:project-detail", args=[self.slug])

    def role_of(self, user) -> str | None:
        """The user's role here; superusers act as admins of every project."""
        if not user.is_authenticated:
            return None
        if user.is_superuser:
            return Role.ADMIN
        membership = self.memberships.filter(user=user).only("role").first()
        return membership.role if membership else None

    def allows(self, user, role: str) -> bool:
        have = self.role_of(user)
        return have is not None and ROLE_RANK[have] >= ROLE_RANK[role]


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["project", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class Item(models.Model):
    """One thing to label: a prompt (text or chat messages) and its responses."""

    class Route(models.TextChoices):
        """Who labels the item: the routing app decides (routing/services.py), the assignment
        engine obeys: only items routed to people are ever leased to a person."""

        HUMAN = "human", "People"
        JUDGE = "judge", "Judges only"
        BOTH = "both", "People and judges"
        PENDING = "pending", "Waiting for the router"

    # The routes under which people label the item: the next-item index holds only these.
    TO_PEOPLE = (Route.HUMAN, Route.BOTH)

    # Indexed by item_project_idx, whose (project, id) serves the foreign key too.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    external_id = models.CharField(max_length=255)
    prompt = models.JSONField(help_text="A string, or a list of {role, content} messages.")
    # Kept by the database: whether the prompt is chat messages. An export asks whether any of
    # its items is one (its prompt column's type depends on it); a small partial index answers
    # that, where the JSON test took a scan of every item.
    chat = models.GeneratedField(
        expression=models.ExpressionWrapper(
            Q(prompt__0__role__isnull=False), output_field=models.BooleanField()
        ),
        output_field=models.BooleanField(),
        db_persist=True,
    )
    responses = models.JSONField(help_text="A list of {id, text, model}.")
    metadata = models.JSONField(default=dict, blank=True)
    priority = models.IntegerField(default=0)
    gold_label = models.JSONField(null=True, blank=True, help_text="Known answer, for gold checks.")
    # Kept by annotate.assignment on every lease, submit, skip and expiry, so that choosing the
    # next item is an index scan; db_default lets raw inserts (COPY) leave them out.
    human_label_count = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Human labels of this item."
    )
    lease_count = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Live leases: assignments handed out, not yet done."
    )
    route = models.CharField(
        max_length=8,
        choices=Route.choices,
        default=Route.HUMAN,
        db_default=Route.HUMAN,
        help_text="Who labels it; set by the router (the next-item index holds people's only).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"], name="item_external_id_unique"
            )
        ]
        indexes = [
            # The next-item query: breadth first, then priority, then id, LIMIT 1; only items
            # routed to people are in it, so one routed to judges is never leased to a person.
            models.Index(
                fields=["project", "human_label_count", "-priority", "id"],
                name="item_next_idx",
                condition=Q(gold_label__isnull=True, route__in=["human", "both"]),
            ),
            models.Index(
                fields=["project", "human_label_count", "id"],
                name="item_next_gold_idx",
                condition=Q(gold_label__isnull=False),
            ),
            # A project's items by id: counted and cut into ranges by an index-only scan.
            models.Index(fields=["project", "id"], name="item_project_idx"),
            models.Index(fields=["project"], name="item_chat_idx", condition=Q(chat=True)),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.external_id}"

    @property
    def is_chat(self) -> bool:
        return isinstance(self.prompt, list)

    def response(self, response_id: str) -> dict | None:
        return next((r for r in self.responses if r["id"] == response_id), None)


class Judge(models.Model):
    """An LLM, a jury of judges or a registered reward model that labels a project's items; its
    labels keep the judge as their source. Configured by project admins (judges/services.py
    validates and runs them). The API key is never stored: `api_key_env` names the environment
    variable of the worker that holds it.

    Spend: `spent_usd` is what finished calls cost; `reserved_usd` what calls in flight may cost
    at most. A call starts only if budget_usd - spent_usd - reserved_usd covers its worst case,
    reserved in one conditional UPDATE (judges/limits.py), so no number of workers can overspend.
    """

    class Backend(models.TextChoices):
        OPENAI_COMPAT = "openai_compat", "OpenAI-compatible chat endpoint"
        ANTHROPIC = "anthropic", "Anthropic messages API"
        REWARD_MODEL = "reward_model", "Reward model from this project's registry"
        JURY = "jury", "Jury of this project's judges"

    class StructuredOutput(models.TextChoices):
        JSON_SCHEMA = "json_schema", "JSON Schema (response_format json_schema)"
        JSON_OBJECT = "json_object", "Any JSON object (response_format json_object)"
        NONE = "none", "Prompt only"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judges")
    name = models.CharField(max_length=100)
    backend = models.CharField(
        max_length=50, choices=Backend.choices, default=Backend.OPENAI_COMPAT
    )
    model_name = models.CharField(max_length=200, blank=True)
    base_url = models.CharField(max_length=500, blank=True)
    api_key_env = models.CharField(
        max_length=100, blank=True, help_text="Name of the environment variable with the key."
    )
    temperature = models.FloatField(default=0.0)
    max_tokens = models.PositiveIntegerField(default=1024)
    timeout_s = models.FloatField(default=60.0)
    structured_output = models.CharField(
        max_length=16, choices=StructuredOutput.choices, default=StructuredOutput.JSON_SCHEMA
    )
    max_concurrency = models.PositiveIntegerField(default=8)
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    price_in_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    price_out_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    budget_usd = models.DecimalField(max_digits=12, decimal_places=6, default=10)
    spent_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    reserved_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    passes = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Display orders per item; empty: the kind's default."
    )
    system_prompt = models.TextField(blank=True, help_text="Empty: the kind's default.")
    prompt_template = models.TextField(blank=True, help_text="Empty: the kind's default.")
    use_reference = models.BooleanField(
        default=True, help_text="Show the item's reference answer (metadata) when it has one."
    )
    reward_model_id = models.PositiveIntegerField(
        null=True, blank=True, help_text="The registry's model (reward_model backend)."
    )
    tie_margin = models.FloatField(default=0.0, help_text="Reward model: |r_A - r_B| for a tie.")
    members = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="juries", help_text="Jury backend."
    )
    config = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="judge_name_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.model_name or self.backend})"


class Assignment(models.Model):
    """An item leased to one annotator until expires_at."""

    class Status(models.TextChoices):
        LEASED = "leased"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"
        EXPIRED = "expired"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.LEASED)
    swapped = models.BooleanField(default=False, help_text="Responses shown in reverse order.")
    order = models.JSONField(
        default=list, blank=True, help_text="Response ids in the order they are shown."
    )
    skip_reason = models.CharField(max_length=500, blank=True)
    gold_correct = models.BooleanField(
        null=True, blank=True, help_text="For a gold item: whether the first label matched."
    )
    request_id = models.CharField(
        max_length=100, blank=True, help_text="The client's id of the submitting request."
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "annotator"], name="assignment_once_per_annotator"
            )
        ]
        indexes = [
            models.Index(fields=["annotator", "status"]),
            # Reclaiming expired leases: only live leases are in it, so it stays small.
            models.Index(
                fields=["status", "expires_at"],
                name="assignment_expiry_idx",
                condition=Q(status="leased"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item} → {self.annotator} ({self.status})"


class Annotation(models.Model):
    """One label of one item, with where it came from."""

    class Source(models.TextChoices):
        HUMAN = "human"
        JUDGE = "judge"
        IMPORTED = "imported", "Imported with the data"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="annotations")
    source = models.CharField(max_length=16, choices=Source.choices)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="annotations",
    )
    judge = models.ForeignKey(
        Judge, null=True, blank=True, on_delete=models.PROTECT, related_name="annotations"
    )
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="annotation"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    label = models.JSONField(help_text="Canonical label, validated by the kind.")
    # A pairwise label's choice and strength as plain columns, kept by the database from the
    # label: the pairwise export groups millions of labels by them, which reading them out of
    # the JSON per label made cost a third more. Null for the other kinds.
    choice = models.GeneratedField(
        expression=Case(When(kind=Kind.PAIRWISE, then=LabelText("choice"))),
        output_field=models.CharField(max_length=3, null=True),
        db_persist=True,
    )
    strength = models.GeneratedField(
        expression=Case(
            When(
                kind=Kind.PAIRWISE,
                then=Cast(LabelText("strength"), models.SmallIntegerField()),
            )
        ),
        output_field=models.SmallIntegerField(null=True),
        db_persist=True,
    )
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    origin = models.CharField(max_length=255, blank=True, help_text="File, API client or page.")
    # Judge provenance.
    judge_model = models.CharField(max_length=200, blank=True)
    prompt_version = models.CharField(max_length=50, blank=True)
    raw_output = models.TextField(blank=True)
    tokens_in = models.PositiveIntegerField(null=True, blank=True)
    tokens_out = models.PositiveIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(
        null=True, blank=True, help_text="When the annotator last corrected the label."
    )

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["item", "source"])]
        constraints = [
            models.CheckConstraint(
                name="annotation_source_matches",
                condition=(
                    Q(source="human", annotator__isnull=False, judge__isnull=True)
                    | Q(source="judge", judge__isnull=False, annotator__isnull=True)
                    | Q(source="imported", judge__isnull=True)
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.source} label of {self.item}"


class ImportJob(models.Model):
    """An upload imported by a Celery worker; the page polls it for progress."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    file = models.FileField(upload_to="imports/%Y/%m/")
    filename = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField(default=0)
    skip_invalid = models.BooleanField(default=False)
    keep_labels = models.BooleanField(default=False)
    labels_for_existing = models.BooleanField(
        default=False, help_text="Also add the file's labels to items already there."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    bytes_done = models.BigIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import {self.filename} into {self.project} ({self.status})"

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return int(100 * self.bytes_done / self.size_bytes) if self.size_bytes else 0

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)
