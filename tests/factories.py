from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from annotate.kinds import get_kind
from annotate.models import Annotation, Assignment, Item, Membership, Project, Role


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")
    kind = "pairwise"
    config = factory.LazyAttribute(lambda p: get_kind(p.kind).clean_config({}))
    guidelines = "Pick the more helpful response."


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.ANNOTATOR


def _responses(item):
    count = {"pairwise": 2, "listwise": 3}.get(item.project.kind, 1)
    return [
        {"id": str(i + 1), "text": f"Response {i + 1} to item {item.external_id}.", "model": "m"}
        for i in range(count)
    ]


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item

    project = factory.SubFactory(ProjectFactory)
    external_id = factory.Sequence(lambda n: f"item-{n}")
    prompt = factory.Sequence(lambda n: f"Question {n}?")
    responses = factory.LazyAttribute(_responses)
    metadata = factory.LazyFunction(dict)


class AnnotationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Annotation

    item = factory.SubFactory(ItemFactory)
    source = Annotation.Source.HUMAN
    annotator = factory.SubFactory(UserFactory)
    kind = factory.LazyAttribute(lambda a: a.item.project.kind)
    label = factory.LazyFunction(lambda: {"choice": "A", "strength": 2, "rationale": ""})


class AssignmentFactory(factory.django.DjangoModelFactory):
    """A live lease; the item's lease counter is not touched (use annotate.assignment for that)."""

    class Meta:
        model = Assignment

    item = factory.SubFactory(ItemFactory)
    annotator = factory.SubFactory(UserFactory)
    order = factory.LazyAttribute(lambda a: [r["id"] for r in a.item.responses])
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=30))


class DatasetVersionFactory(factory.django.DjangoModelFactory):
    """A done version with no files: for tests that never read its rows (see
    tests/test_rewards_runs.py for versions built from real labels)."""

    class Meta:
        model = "feedback_api.DatasetVersion"

    project = factory.SubFactory(ProjectFactory)
    number = factory.Sequence(lambda n: n + 1)
    format = "pairwise"
    status = "done"
    train_rows = 40
    test_rows = 8


class TrainingRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "rewards.TrainingRun"

    dataset_version = factory.SubFactory(DatasetVersionFactory)
    project = factory.LazyAttribute(lambda r: r.dataset_version.project)
    objective = "pairwise"
    config = factory.LazyFunction(lambda: {"objective": "pairwise", "max_length": 48})
    base_model = "all-MiniLM-L6-v2"


def api(user=None) -> APIClient:
    """A REST client, authenticated as `user` when given."""
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


class JudgeFactory(factory.django.DjangoModelFactory):
    """An OpenAI-compatible judge of a project, with a budget and its key's variable name."""

    class Meta:
        model = "annotate.Judge"

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"judge-{n}")
    backend = "openai_compat"
    model_name = "gpt-test"
    base_url = "https://llm.example.com/v1"
    api_key_env = "PREFHUB_TEST_JUDGE_KEY"
    price_in_per_mtok = 1
    price_out_per_mtok = 2
    budget_usd = 5
