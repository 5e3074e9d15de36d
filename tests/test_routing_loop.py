"""The closed loop: its page (each step's state, the next action, who may act) and the whole loop
end to end on a small pairwise project, with a real tiny MiniLM training run on CPU and Celery
eager: people label a batch through the assignment engine -> dataset version -> reward model ->
that model registered as a judge -> the confidence policy with a budget -> the next batch waits
-> the judge runs on it (the real runner) -> the routing that follows the run sends only the
close calls to people, within the budget -> people label those, and only those -> a second
dataset version records whose labels made each row -> retrain.
"""

from __future__ import annotations

import io
import json

import pytest
from django.urls import reverse

from annotate import assignment
from annotate.models import Annotation, Item, Role
from annotate.services import item_import
from feedback_api.models import DatasetVersion
from judges.models import JudgeRun, Judgment, Verdict
from rewards import services as rewards_services
from rewards.models import RewardModel, TrainingRun
from routing import loop, services
from routing.features import margin
from routing.loop_views import ACTIONS
from routing.models import RouteDecision

from .factories import ItemFactory, JudgeFactory, MembershipFactory
from .test_rewards_runs import TINY

pytestmark = pytest.mark.django_db

COLOURS = ("red", "blue", "green", "yellow")


def url(project, action=None) -> str:
    if action is None:
        return reverse("routing:loop", args=[project.slug])
    return reverse("routing:loop-action", args=[project.slug, action])


# The page ---------------------------------------------------------------------------------------


def test_a_researcher_sees_each_step_without_the_actions(client, project, bob):
    MembershipFactory(project=project, user=bob, role=Role.RESEARCHER)
    ItemFactory(project=project)
    client.force_login(bob)
    response = client.get(url(project))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="step-dataset"' in page and 'id="step-route"' in page
    assert 'data-step="label"' in page  # nothing labelled yet
    assert 'data-testid="loop-dataset"' not in page  # researchers do not act


def test_an_admin_sees_the_actions(client, project, alice):
    client.force_login(alice)
    page = client.get(url(project)).content.decode()
    for action in ACTIONS:
        assert f'data-testid="loop-{action}"' in page


def test_the_page_of_another_project_is_not_found(client, project, bob):
    client.force_login(bob)
    assert client.get(url(project)).status_code == 404


def test_an_annotator_may_not_see_the_loop(client, project, annotator):
    client.force_login(annotator)
    assert client.get(url(project)).status_code == 403


@pytest.mark.parametrize("action", ["dataset", "train", "register", "judge", "route"])
def test_only_admins_act(client, project, bob, charlie, action):
    MembershipFactory(project=project, user=bob, role=Role.RESEARCHER)
    client.force_login(bob)
    assert client.post(url(project, action)).status_code == 403
    client.force_login(charlie)  # not a member
    assert client.post(url(project, action)).status_code == 404
    assert not DatasetVersion.objects.exists() and not TrainingRun.objects.exists()


def test_an_unknown_action_is_not_found_and_get_is_refused(client, project, alice):
    client.force_login(alice)
    assert client.post(url(project, "delete-everything")).status_code == 404
    assert client.get(url(project, "dataset")).status_code == 405


def test_building_a_dataset_version_reuses_the_newest_recipe(
    client, project, alice, media, django_capture_on_commit_callbacks
):
    item = ItemFactory(project=project)
    Annotation.objects.create(
        item=item,
        source="human",
        annotator=alice,
        kind="pairwise",
        label={"choice": "A", "strength": 2, "rationale": ""},
    )
    client.force_login(alice)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url(project, "dataset"), follow=True)
    assert len(callbacks) == 1  # the build, enqueued on commit
    assert "Dataset version 1 is being built." in response.content.decode()
    first = DatasetVersion.objects.get()
    assert first.format == "pairwise"
    DatasetVersion.objects.filter(pk=first.pk).update(split={"test_fraction": 0.5, "seed": 7})
    client.post(url(project, "dataset"))
    second = DatasetVersion.objects.get(number=2)
    assert second.split["test_fraction"] == 0.5 and second.split["seed"] == 7


def test_training_without_a_version_says_so(client, project, alice):
    client.force_login(alice)
    response = client.post(url(project, "train"), follow=True)
    assert "No finished dataset version to train on" in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_the_judge_step_needs_a_router_judge(client, project, alice):
    client.force_login(alice)
    response = client.post(url(project, "judge"), follow=True)
    assert "Nothing for the router&#x27;s judge to do" in response.content.decode()
    assert not JudgeRun.objects.exists()


def test_route_now_routes_on_a_worker(
    client, project, alice, eager_celery, django_capture_on_commit_callbacks
):
    judge = JudgeFactory(project=project, name="j")
    services.policy_save(
        project=project, data={"policy": "all_judge", "judge": judge, "audit_share": 0.0}
    )
    judge.active = False  # the pass then starts no judge run (that is tested below)
    judge.save()
    ItemFactory(project=project, route="pending")
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url(project, "route"))
    assert set(Item.objects.values_list("route", flat=True)) == {"judge"}
    assert RouteDecision.objects.get().trigger.startswith("on demand by alice")


def test_the_page_reads_in_a_fixed_number_of_queries(
    client, project, alice, django_assert_max_num_queries
):
    for n in range(30):
        ItemFactory(project=project, external_id=f"q{n}")
    client.force_login(alice)
    with django_assert_max_num_queries(25):
        assert client.get(url(project)).status_code == 200


# The loop, end to end ---------------------------------------------------------------------------


def batch(start: int, n: int, *, close: bool = False) -> bytes:
    """Items whose right answer names the colour asked about; the other response does not
    answer ("I do not know"), or with `close` names another colour: a close call."""
    lines = []
    for k in range(start, start + n):
        colour = COLOURS[k % 4]
        other = f"The colour is {COLOURS[(k + 1) % 4]}." if close else "I do not know, sorry."
        responses = [
            {"id": "1", "text": f"The colour is {colour}.", "model": "m"},
            {"id": "2", "text": other, "model": "m"},
        ]
        if k % 2:
            responses.reverse()
            responses = [{**r, "id": str(i + 1)} for i, r in enumerate(responses)]
        prompt = f"Item {k}: what colour is the {colour} ball?"
        lines.append({"id": f"i{k}", "prompt": prompt, "responses": responses})
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def label_everything_offered(project, annotator) -> list[str]:
    """Label what the assignment engine hands out until it has nothing: the response that
    names the colour asked about wins. Returns the items labelled."""
    done = []
    while (lease := assignment.assignment_next(project=project, annotator=annotator)) is not None:
        asked = lease.item.prompt.split("the ")[-1].split(" ")[0]
        shown = assignment.responses_in_display_order(lease)
        right = next(k for k, r in enumerate(shown) if r["text"] == f"The colour is {asked}.")
        label = {"choice": "AB"[right], "strength": 2, "rationale": ""}
        assignment.annotation_submit(
            assignment=lease, label=label, time_spent_ms=900, annotator=annotator
        )
        done.append(lease.item.external_id)
    return done


def importing(project, body: bytes) -> None:
    report = item_import(project=project, stream=io.BytesIO(body), filename="batch.jsonl")
    assert report.created == body.count(b"\n"), report


@pytest.mark.slow
def test_the_loop_from_labels_to_a_reward_model_that_routes_the_next_batch(
    client, project, alice, annotator, media, eager_celery, django_capture_on_commit_callbacks
):
    client.force_login(alice)

    def act(action: str) -> str:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url(project, action), follow=True)
        assert response.status_code == 200
        return response.content.decode()

    # 1. People label the first batch through the assignment engine.
    importing(project, batch(0, 32))
    assert len(label_everything_offered(project, annotator)) == 32
    assert loop.loop_state(project).next_step == "dataset"

    # 2. A dataset version of their labels, then a tiny reward model trained on it.
    assert "Dataset version 1 is being built." in act("dataset")
    first = DatasetVersion.objects.get(number=1)
    assert first.status == DatasetVersion.Status.DONE, first.error
    assert first.stats["rows.label_sources.human"] == 32
    assert loop.loop_state(project).next_step == "train"
    run = rewards_services.training_run_create(
        dataset_version=first, user=alice, config={**TINY, "checkpoint_steps": 1000}, enqueue=False
    )
    run = rewards_services.training_run_execute(run_id=run.pk)
    assert run.status == TrainingRun.Status.DONE, run.logs

    # 3. The model registered as a judge, and the confidence policy routing with it.
    assert "is the judge &#x27;reward model v1&#x27;" in act("register")
    judge = loop.loop_state(project).model_judge
    assert judge.reward_model_id == run.reward_model.pk
    assert loop.loop_state(project).next_step == "policy"
    # People may label 6 more items (the 32 of the first batch count); the model's reward gap
    # between a right answer and "I do not know" is ~0.26 after its one tiny epoch, between two
    # colours ~0.01: the threshold between them sends people the close calls.
    services.policy_save(
        project=project,
        data={
            "policy": "confidence",
            "judge": judge,
            "params": {"max_margin": 0.1},
            "budget_labels": 32 + 6,
            "audit_share": 0.1,
        },
        user=alice,
    )

    # 4. The next batch waits for the router: nobody is offered it.
    importing(project, batch(100, 8) + batch(200, 8, close=True))
    fresh = Item.objects.filter(external_id__regex=r"^i[12]\d\d$")
    assert set(fresh.values_list("route", flat=True)) == {"pending"}
    assert assignment.assignment_next(project=project, annotator=annotator) is None
    assert loop.loop_state(project).next_step == "judge"

    # 5. The reward-model judge labels it; the routing after its run decides each item.
    assert "started on 16 items" in act("judge")
    judge_run = JudgeRun.objects.get()
    assert judge_run.status == JudgeRun.Status.DONE, judge_run.error
    assert Verdict.objects.filter(item__in=fresh).count() == 16
    margins = {
        j.item.external_id: margin(j.extra["scores"])
        for j in Judgment.objects.filter(item__in=fresh).select_related("item")
    }
    decisions = {d.item.external_id: d for d in RouteDecision.objects.select_related("item")}
    assert set(decisions) == set(margins)  # every waiting item decided, none left pending
    routes = dict(fresh.values_list("external_id", "route"))
    people = [e for e, r in routes.items() if r in Item.TO_PEOPLE]
    judges_only = [e for e, r in routes.items() if r == Item.Route.JUDGE]
    assert len(people) == 6  # the budget, spent: 8 close calls (and the audit slice) wanted more
    assert len(judges_only) == 10
    audit = {e for e, d in decisions.items() if d.audit}
    assert all(routes[e] == Item.Route.BOTH for e in audit)
    close = {e for e in routes if e.startswith("i2")}
    assert all(margins[e] < 0.1 for e in close) and all(
        margins[e] >= 0.1 for e in routes.keys() - close
    )
    for e in judges_only:
        spent = decisions[e].reason.startswith("human budget spent")
        # A sure call is the judge's; a close call is only when the budget is spent.
        assert spent == (e in close), (e, margins[e], decisions[e].reason)
    # The budget goes to the closest calls first.
    granted = [margins[e] for e in people if e not in audit]
    refused = [margins[e] for e in judges_only if e in close]
    assert granted and refused and max(granted) <= min(refused)
    assert loop.loop_state(project).next_step == "label"

    # 6. People get exactly the items routed to them, and label them.
    assert sorted(label_everything_offered(project, annotator)) == sorted(people)
    assert loop.loop_state(project).next_step == "dataset"

    # 7. The second version records whose labels made each row, and the card shows the mix.
    assert "Dataset version 2 is being built." in act("dataset")
    second = DatasetVersion.objects.get(number=2)
    assert second.status == DatasetVersion.Status.DONE, second.error
    stats = second.stats
    assert stats["rows.label_sources.human"] == 32
    assert stats["rows.label_sources.judge"] == len(judges_only)
    # People and the judge on one item: a row where they agree, none where they split.
    assert stats.get("rows.label_sources.both", 0) + stats.get("left_out.no_majority", 0) == len(
        people
    )
    assert "Rows by label source (`label_sources`): human 32" in second.card
    page = client.get(url(project)).content.decode()
    assert f'<span data-mix="judge">judge {len(judges_only)}</span>' in page

    # 8. Retrain on it, with the last run's settings.
    assert "is queued on dataset version 2" in act("train")
    retrained = TrainingRun.objects.order_by("-id").first()
    assert retrained.status == TrainingRun.Status.DONE, retrained.logs
    assert retrained.dataset_version == second and retrained.config["max_length"] == 48
    assert RewardModel.objects.get(run=retrained).version == 2
    assert loop.loop_state(project).next_step == "register"
