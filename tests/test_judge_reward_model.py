"""The reward-model judge: a tiny MiniLM reward model trained for real in this project, then
used as a judge through the real run path (the runner, the Kind's label_from_scores, verdicts
and judge Annotations), with Celery eager. It scores each response once per pass; the verdict
is P(A better) = sigmoid(r_A - r_B)."""

from __future__ import annotations

import json
import math

import pytest

from annotate.models import Annotation, Judge
from judges import services
from judges.models import JudgeRun, Judgment, Verdict
from rewards import services as rewards_services
from rewards.models import TrainingRun

from .factories import ItemFactory, ProjectFactory
from .test_rewards_runs import build_version, create

pytestmark = pytest.mark.slow


@pytest.fixture
def trained(project, media):
    version = build_version(project)
    run = rewards_services.training_run_execute(run_id=create(version).pk)
    assert run.status == TrainingRun.Status.DONE, run.logs
    return run.reward_model


def test_a_trained_reward_model_judges_new_items(
    project, trained, eager_celery, django_capture_on_commit_callbacks
):
    judge = services.judge_save(
        project=project,
        data={"name": "rm", "backend": "reward_model", "reward_model_id": trained.pk},
    )
    assert judge.model_name == f"reward model v{trained.version}"
    fresh = [
        ItemFactory(
            project=project,
            external_id=f"new-{n}",
            prompt=f"Item {100 + n}: what colour is the {colour} ball?",
            responses=[
                {"id": "x", "text": f"The colour is {colour}.", "model": "m"},
                {"id": "y", "text": "I do not know, sorry.", "model": "m"},
            ][:: 1 if n % 2 == 0 else -1],
        )
        for n, colour in enumerate(["red", "blue", "green", "yellow"])
    ]
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_start(project=project, judges=[judge], selection="unlabeled")
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.DONE, run.error
    assert run.items == 4 and run.passes_total == 4  # one pass: a reward model has no order bias
    verdicts = {v.item.external_id: v for v in Verdict.objects.select_related("item")}
    assert set(verdicts) == {item.external_id for item in fresh}
    for item in fresh:
        verdict = verdicts[item.external_id]
        assert verdict.status == Verdict.Status.AGREED
        judgment = Judgment.objects.get(item=item)
        scores = judgment.extra["scores"]
        first, second = (scores[r["id"]] for r in item.responses)
        assert verdict.label["choice"] == ("A" if first >= second else "B")
        p_first = 1 / (1 + math.exp(-(first - second)))
        assert f"P(A better) = {p_first:.4f}" in verdict.label["rationale"]
        annotation = verdict.annotation
        assert annotation.source == Annotation.Source.JUDGE and annotation.judge == judge
        assert annotation.prompt_version == judgment.prompt_version
        assert json.loads(annotation.raw_output)["0"] == judgment.raw_output
    # The tiny model learnt the set's rule: the answer beats "I do not know".
    wins = sum(
        verdicts[i.external_id].label["choice"] == ("A" if i.responses[0]["id"] == "x" else "B")
        for i in fresh
    )
    assert wins >= 3
    # Free: nothing spent, no budget reserved.
    judge.refresh_from_db()
    assert judge.spent_usd == 0 and judge.reserved_usd == 0

    # Run again: every pass was judged under this prompt version, so nothing is planned twice.
    again = services.run_start(project=project, judges=[judge], selection="all")
    assert again.passes_total == 48 + 0  # the 48 training items only
    assert Judgment.objects.filter(item__in=fresh).count() == 4


def test_a_reward_model_of_another_project_cannot_be_chosen(project, trained):
    other = ProjectFactory(slug="other")
    with pytest.raises(services.ServiceError) as error:
        services.judge_save(
            project=other,
            data={"name": "rm", "backend": "reward_model", "reward_model_id": trained.pk},
        )
    assert error.value.field == "reward_model_id"
    assert not Judge.objects.filter(project=other).exists()
