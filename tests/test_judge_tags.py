"""Prompt tags: an LLM judge tags each item's prompt on request (purpose "tags"), through the
real runner and SDKs against tests/llm_server.py; the tags become the router's features."""

from __future__ import annotations

import json

import pytest

from annotate.models import Annotation
from judges import services, tags
from judges.models import JudgeRun, Judgment, PromptTags, Verdict
from routing import features

from .factories import ItemFactory, JudgeFactory, ProjectFactory
from .llm_server import Answer
from .test_judge_runs import judge_for, start

pytestmark = pytest.mark.django_db(transaction=True)

GOOD = {
    "subject": "mathematics",
    "expertise": "basic domain knowledge",
    "safety_concern": "none",
    "intents": "simple",
    "open_endedness": "none",
    "format_constraints": "no",
}


@pytest.fixture
def project(db):
    return ProjectFactory(slug="tagged", kind="pairwise")


def tagger(request) -> Answer:
    user = next(m["content"] for m in request.body["messages"] if m["role"] == "user")
    if "poem" in user:
        return Answer(
            text=json.dumps({**GOOD, "subject": "Creative Writing", "open_endedness": "high"})
        )
    return Answer(text=json.dumps(GOOD))


def test_a_tags_run_stores_each_prompts_tags_once_and_labels_nothing(
    project, llm_server, eager_celery
):
    llm_server.respond = tagger
    sum_item = ItemFactory(project=project, external_id="sum", prompt="What is 2 + 2?")
    poem = ItemFactory(project=project, external_id="poem", prompt="Write a poem about rain.")
    judge = judge_for(project, llm_server)
    run = start(project, [judge], purpose="tags")
    assert run.status == JudgeRun.Status.DONE, run.error
    assert run.passes_total == 2 and llm_server.usage()["requests"] == 2
    assert PromptTags.objects.get(item=sum_item).tags == GOOD
    poem_tags = PromptTags.objects.get(item=poem).tags
    assert poem_tags["subject"] == "creative writing" and poem_tags["open_endedness"] == "high"
    assert PromptTags.objects.get(item=poem).prompt_version == tags.version()
    # Nothing is labelled: no verdict, no judge annotation; the calls were paid for.
    assert not Verdict.objects.exists() and not Annotation.objects.exists()
    judge.refresh_from_db()
    assert judge.spent_usd > 0
    # The request asked for the prompt, not the responses, with the closed schema.
    body = llm_server.requests[0].body
    assert body["response_format"]["json_schema"]["schema"] == tags.schema()
    assert "Response A" not in body["messages"][1]["content"]
    # Asked again, nothing is tagged twice.
    again = start(project, [judge], purpose="tags")
    assert again.passes_total == 0 and PromptTags.objects.count() == 2
    # The router sees them.
    got = {c.item_id: c.tags for c in features.candidates([sum_item, poem], None)}
    assert got[poem.pk]["subject"] == "creative writing" and got[sum_item.pk] == GOOD


def test_a_reply_with_an_unknown_value_is_asked_again_then_kept_as_failed(
    project, llm_server, eager_celery
):
    bad = Answer(text=json.dumps({**GOOD, "subject": "astrology"}))
    llm_server.script(bad, bad)
    ItemFactory(project=project, external_id="x")
    run = start(project, [judge_for(project, llm_server)], purpose="tags")
    assert run.status == JudgeRun.Status.DONE
    failed = Judgment.objects.get()
    assert failed.status == "failed" and "'astrology' is not one of" in failed.error
    assert not PromptTags.objects.exists()


@pytest.mark.parametrize(
    "text",
    ["no json here", json.dumps({k: v for k, v in GOOD.items() if k != "intents"})],
)
def test_parse_names_what_is_wrong(text):
    from annotate.kinds import KindError

    with pytest.raises(KindError):
        tags.parse(text)


def test_booleans_and_spacing_are_read_as_the_allowed_values():
    reply = (
        "```json\n"
        + json.dumps({**GOOD, "format_constraints": True, "expertise": "General  public"})
        + "\n```"
    )
    parsed = tags.parse(reply)
    assert parsed["format_constraints"] == "yes" and parsed["expertise"] == "general public"


def test_a_reward_model_or_a_jury_cannot_tag(project):
    rm = JudgeFactory(project=project, name="rm", backend="reward_model", api_key_env="")
    with pytest.raises(services.ServiceError, match="not an LLM"):
        services.run_start(project=project, judges=[rm], selection="all", purpose="tags")
    with pytest.raises(services.ServiceError) as error:
        services.run_start(project=project, judges=[rm], selection="all", purpose="nope")
    assert error.value.field == "purpose"
    assert not JudgeRun.objects.exists()


def test_the_api_starts_a_tags_run(project, llm_server, eager_celery, alice):
    from annotate.models import Role

    from .factories import MembershipFactory, api

    MembershipFactory(project=project, user=alice, role=Role.ADMIN)
    llm_server.respond = tagger
    ItemFactory(project=project, external_id="one")
    judge = judge_for(project, llm_server)
    response = api(alice).post(
        f"/api/v1/projects/{project.slug}/judge-runs/",
        {"judges": [judge.pk], "selection": "all", "purpose": "tags"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["purpose"] == "tags"
    assert PromptTags.objects.count() == 1
    bad = api(alice).post(
        f"/api/v1/projects/{project.slug}/judge-runs/",
        {"judges": [judge.pk], "selection": "all", "purpose": "poetry"},
        format="json",
    )
    assert bad.status_code == 400 and "purpose" in bad.json()
