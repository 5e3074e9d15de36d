"""The learned router: on a synthetic project whose judge is wrong exactly on a known kind of
item, it learns that kind (held-out AUC well above chance), and the learned policy sends those
items to people first under the budget; without a router it is the confidence policy; data that
cannot train a router is refused and changes nothing.

Items, human labels and verdicts are written as the assignment engine and the judges' runner
write them (Item.human_label_count, Annotation, Judgment with the reward model's scores,
Verdict), in bulk to keep the tests to seconds; the MiniLM similarity feature runs for real in
the one test marked slow.
"""

from __future__ import annotations

import random

import pytest
from rest_framework.test import APIClient

from annotate.models import Annotation, Item
from judges.models import JudgeRun, Judgment, Verdict
from routing import features, learning, services, tasks
from routing.models import ResponseSimilarity, RouteDecision, RouterModel
from routing.services import ServiceError

from .factories import JudgeFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

LABEL = {"strength": 2, "rationale": ""}


@pytest.fixture
def judge(project):
    return JudgeFactory(project=project, name="rm", backend="reward_model")


@pytest.fixture(autouse=True)
def _media(media):
    return media


def hard(k: int, structure: str) -> bool:
    return k % 3 == 0 if structure == "domain" else k % 4 == 0


def make(project, judge, n, *, start=0, labelled=True, structure="domain", seed=0):
    """n pairwise items judged by `judge`: under "domain" the judge is wrong on the items whose
    metadata says domain=hard, under "length" on those whose responses are long; 5% noise
    elsewhere. The reward model's margin says nothing of it. With `labelled`, one person's
    label each (the people always pick A)."""
    rng = random.Random(seed)
    items = []
    for k in range(start, start + n):
        long = structure == "length" and hard(k, structure)
        text = "word " * (300 if long else 10)
        items.append(
            Item(
                project=project,
                external_id=f"i{k}",
                prompt=f"Question {k}?",
                responses=[
                    {"id": "1", "text": f"{text} one {k}", "model": "m"},
                    {"id": "2", "text": f"{text} two {k}", "model": "m"},
                ],
                metadata={
                    "domain": "hard" if structure == "domain" and hard(k, structure) else "easy",
                    "batch": rng.choice(["x", "y"]),
                },
                human_label_count=1 if labelled else 0,
                route="human" if labelled else "pending",
            )
        )
    items = Item.objects.bulk_create(items)
    run = JudgeRun.objects.create(project=project, selection="all")
    person = UserFactory() if labelled else None
    judgments, verdicts, annotations = [], [], []
    for item in items:
        k = int(item.external_id[1:])
        wrong = rng.random() < (0.9 if hard(k, structure) else 0.05)
        choice = "B" if wrong else "A"
        scores = {"1": rng.uniform(-2, 2), "2": rng.uniform(-2, 2)}
        judgments.append(
            Judgment(
                run=run,
                item=item,
                judge=judge,
                prompt_version="v1",
                status="done",
                extra={"scores": scores},
            )
        )
        verdicts.append(
            Verdict(
                run=run,
                item=item,
                judge=judge,
                prompt_version="v1",
                status="agreed",
                label={"choice": choice, **LABEL},
            )
        )
        if labelled:
            annotations.append(
                Annotation(
                    item=item,
                    source="human",
                    annotator=person,
                    kind="pairwise",
                    label={"choice": "A", **LABEL},
                )
            )
    Judgment.objects.bulk_create(judgments)
    Verdict.objects.bulk_create(verdicts)
    Annotation.objects.bulk_create(annotations)
    return items


def learned(project, judge, **data):
    return services.policy_save(
        project=project,
        data={"policy": "learned", "judge": judge, "audit_share": 0.0, **data},
    )


@pytest.mark.parametrize("structure", ["domain", "length"])
def test_the_router_learns_where_the_judge_is_wrong_and_people_get_those_first(
    project, judge, structure
):
    make(project, judge, 400, structure=structure)
    learned(project, judge, budget_labels=400)  # no router yet: all 400 are started anyway
    router = services.router_train(project=project)
    assert router.status == RouterModel.Status.DONE
    assert router.auc > 0.85
    assert router.n_train + router.n_test == 400 and router.n_test > 60
    assert router.data["items"] == 400 and router.data["double_labelled"] == 400
    assert "margin" in router.feature_names and "embedding_similarity" not in router.feature_names
    if structure == "domain":
        assert {"meta.domain=hard", "meta.domain=easy"} <= set(router.feature_names)
    curve = router.curve
    at_25 = curve["shares"].index(0.25)
    assert curve["learned"][at_25] > curve["random"][at_25]
    assert curve["learned"][at_25] >= curve["confidence"][at_25]
    assert curve["oracle"][-1] == 1.0

    # 120 fresh judged items (30 or 40 hard); the budget has room for as many more people.
    fresh = make(project, judge, 120, start=1000, labelled=False, structure=structure, seed=1)
    n_hard = sum(hard(int(i.external_id[1:]), structure) for i in fresh)
    learned(project, judge, budget_labels=400 + n_hard)
    to_people = [i for i in fresh if Item.objects.get(pk=i.pk).route == "human"]
    assert len(to_people) == n_hard
    assert sum(hard(int(i.external_id[1:]), structure) for i in to_people) >= 0.9 * n_hard
    decision = RouteDecision.objects.get(item=to_people[0])
    assert decision.policy == "learned" and decision.features["router"] == router.pk
    assert decision.features["p_disagree"] == pytest.approx(decision.risk) and decision.risk > 0.5
    assert "P(judge disagrees)" in decision.reason
    spent = RouteDecision.objects.filter(item__in=fresh, route="judge").first()
    assert spent.reason.startswith("human budget spent")
    summary = services.router_current(project)
    assert summary["id"] == router.pk and summary["auc"] == router.auc


def test_without_a_router_the_learned_policy_is_the_confidence_policy(project, judge):
    fresh = make(project, judge, 6, labelled=False)
    learned(project, judge, params={"max_margin": 1.0})
    for item in fresh:
        decision = RouteDecision.objects.get(item=item)
        assert decision.reason.startswith("cold start (no router trained): reward margin")
        item.refresh_from_db()
        assert item.route == ("human" if decision.features["margin"] < 1.0 else "judge")


def test_an_item_without_a_verdict_waits_for_it_under_the_router(project, judge):
    make(project, judge, 300)
    learned(project, judge)
    services.router_train(project=project)
    item = Item.objects.create(
        project=project, external_id="new", prompt="p", responses=[], route="pending"
    )
    report = services.route_items(project=project)
    assert report.waiting == 1 and not RouteDecision.objects.filter(item=item).exists()


def test_too_few_double_labelled_items_are_refused_and_change_nothing(project, judge, settings):
    make(project, judge, 150)
    learned(project, judge)
    with pytest.raises(ServiceError) as error:
        services.router_train(project=project)
    assert error.value.field == "router"
    assert "at least 200 items labelled by both people and the judge; there are 150" in str(
        error.value
    )
    assert not RouterModel.objects.exists()
    assert services.router_current(project) is None


def test_a_judge_that_never_disagrees_cannot_teach_a_router(project, judge):
    make(project, judge, 300)
    Verdict.objects.update(label={"choice": "A", **LABEL})
    learned(project, judge)
    with pytest.raises(ServiceError, match="3 on which the judge disagreed"):
        services.router_train(project=project)
    assert not RouterModel.objects.exists()


def test_a_router_needs_a_judge(project):
    with pytest.raises(ServiceError) as error:
        services.router_train(project=project)
    assert error.value.field == "judge"


def test_a_routing_pass_retrains_the_router_when_enough_new_items_came_in(
    project, judge, settings, eager_celery, django_capture_on_commit_callbacks
):
    settings.ROUTING_ROUTER_EMBEDDINGS = False
    settings.ROUTING_RETRAIN_EVERY = 100
    make(project, judge, 250)
    learned(project, judge)
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.route(project.pk, "after judge run 1")
    assert result["router_retrain"] is True
    first = RouterModel.objects.get()
    assert first.data["double_labelled"] == 250 and first.data["embeddings"] is False
    make(project, judge, 50, start=250, seed=2)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.route(project.pk)["router_retrain"] is False  # 50 new: not yet
    make(project, judge, 60, start=300, seed=3)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.route(project.pk)["router_retrain"] is True
    assert RouterModel.objects.count() == 2
    assert learning.current(project, judge).data["double_labelled"] == 360


def test_the_router_file_is_not_in_the_database_and_loads_back(project, judge, media):
    make(project, judge, 300)
    learned(project, judge)
    router = services.router_train(project=project)
    path = media / router.model_path
    assert path.is_file() and path.suffix == ".joblib"
    candidates = features.candidates(Item.objects.filter(project=project), judge)
    risks, matrix, names = learning.predict(router, candidates)
    assert names == router.feature_names and matrix.shape == (300, len(names))
    assert all(0 <= r <= 1 for r in risks)


@pytest.mark.slow
def test_the_training_task_adds_the_minilm_similarity_of_the_responses(project, judge):
    make(project, judge, 220)
    learned(project, judge)
    result = tasks.train_router(project.pk, embeddings=True)
    assert result["status"] == "done", result
    router = RouterModel.objects.get()
    assert "embedding_similarity" in router.feature_names and router.data["embeddings"]
    values = list(ResponseSimilarity.objects.values_list("value", flat=True))
    assert len(values) == 220 and all(0.5 < v <= 1.0 for v in values)  # near-identical answers


def test_the_features_read_the_judges_pick_its_confidence_and_the_prompt_tags(project, judge):
    from judges.models import PromptTags

    make(project, judge, 3, structure="length")
    first = Item.objects.get(external_id="i0")
    first.responses[1]["text"] += " and a longer ending"
    first.save()
    run = JudgeRun.objects.get()
    PromptTags.objects.create(
        item=first, judge=judge, run=run, prompt_version="t", tags={"subject": "law"}
    )
    items = Item.objects.filter(project=project).order_by("id")
    rows = dict(zip([i.external_id for i in items], features.candidates(items, judge), strict=True))
    matrix, names = learning.feature_matrix([rows["i0"]])
    values = dict(zip(names, matrix[0].tolist(), strict=True))
    assert values["tag.subject=law"] == 1.0
    assert 0.0 <= values["confidence_risk"] <= 1.0
    verdict = Verdict.objects.get(item=first)
    picked = verdict.label["choice"]
    texts = [r["text"] for r in first.responses]
    longer = "A" if len(texts[0]) > len(texts[1]) else "B"
    assert values["judge_pick_longest"] == float(picked == longer)
    assert (values["judge_pick_chars_vs_mean"] > 0) == (picked == longer)


def test_the_kinds_name_the_response_a_label_prefers():
    from annotate.kinds import get_kind

    responses = [{"id": "x"}, {"id": "y"}, {"id": "z"}]
    pairwise, listwise = get_kind("pairwise"), get_kind("listwise")
    assert pairwise.preferred_response({"choice": "B"}, responses) == "y"
    assert pairwise.preferred_response({"choice": "tie"}, responses) is None
    assert listwise.preferred_response({"ranking": ["z", "x", "y"]}, responses) == "z"
    assert listwise.preferred_response({"ranking": [["z", "x"], "y"]}, responses) is None
    assert listwise.preferred_response({"ranking": [["y"], "x", "z"]}, responses) == "y"
    assert get_kind("ratings").preferred_response({"aspects": {}}, responses) is None


def test_the_router_is_shown_trained_from_the_page_and_api_and_curved_in_the_report(
    client, project, judge, alice, bob, monkeypatch, django_capture_on_commit_callbacks
):
    from annotate.models import Role

    from .factories import MembershipFactory, api

    MembershipFactory(project=project, user=bob, role=Role.RESEARCHER)
    make(project, judge, 300)
    learned(project, judge)
    base = f"/projects/{project.slug}/routing/"
    client.force_login(alice)
    assert "No router trained yet" in client.get(base).content.decode()
    sent = []
    monkeypatch.setattr(
        "routing.tasks.train_router.apply_async",
        lambda args, task_id: sent.append((args, task_id)),
    )
    client.force_login(bob)  # a researcher reads, never trains
    assert client.post(base + "router/train/").status_code == 403
    assert api(bob).post(f"/api/v1/projects/{project.slug}/routing/router/").status_code == 403
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(base + "router/train/", follow=True)
        answer = api(alice).post(f"/api/v1/projects/{project.slug}/routing/router/")
    assert "Router training queued" in page.content.decode()
    assert answer.status_code == 202
    assert [args for args, _ in sent] == [(project.pk,), (project.pk,)]
    assert not RouterModel.objects.exists()  # queued, not trained in the request
    result = tasks.train_router(project.pk, embeddings=False)  # as the training worker runs it
    router = RouterModel.objects.get(pk=result["router"])
    text = client.get(base).content.decode()
    assert 'id="router-auc"' in text and f"{router.auc:.3f}" in text
    assert 'id="router-curve"' in text
    got = api(bob).get(f"/api/v1/projects/{project.slug}/routing/router/").json()
    assert got["id"] == router.pk and got["auc"] == pytest.approx(router.auc)
    assert got["n_train"] + got["n_test"] == 300 and "margin" in got["features"]
    report = api(bob).get(f"/api/v1/projects/{project.slug}/routing/report/").json()
    assert set(report["curves"]) == {"random", "confidence", "learned", "oracle"}


def test_training_a_router_without_a_judge_or_data_says_why_and_queues_nothing(
    client, project, judge, alice, monkeypatch
):
    from .factories import api

    sent = []
    monkeypatch.setattr(
        "routing.tasks.train_router.apply_async", lambda *a, **k: sent.append((a, k))
    )
    base = f"/projects/{project.slug}/routing/"
    client.force_login(alice)
    page = client.post(base + "router/train/", follow=True).content.decode()
    assert "The router was not trained: choose a router judge" in page
    make(project, judge, 20)
    learned(project, judge)
    answer = api(alice).post(f"/api/v1/projects/{project.slug}/routing/router/")
    assert answer.status_code == 400
    assert (
        "at least 200 items" in answer.json()["router"][0]
        and "there are 20" in answer.json()["router"][0]
    )
    assert sent == [] and not RouterModel.objects.exists()


def test_a_pass_reads_stored_text_features_as_the_text_would_give_them(project, judge):
    """Stored text features (ItemTextFeatures) stand for the text in a learned pass: the same
    decisions as from the text itself; a row of an older version is not read, and storing
    computes it again."""
    from routing.models import ItemTextFeatures

    make(project, judge, 300, structure="length")
    learned(project, judge)
    services.router_train(project=project)
    fresh = make(project, judge, 40, start=1000, labelled=False, structure="length", seed=1)
    waiting = Item.objects.filter(pk__in=[i.pk for i in fresh])

    def decisions():
        Item.objects.filter(pk__in=[i.pk for i in fresh]).update(route="pending")
        RouteDecision.objects.filter(item__in=fresh).delete()
        services.route_items(project=project)
        return {  # the stored path's features also name the version they read
            d.item_id: (d.route, d.risk, dict(d.read_features(), text_features=None))
            for d in RouteDecision.objects.filter(item__in=fresh).select_related(
                "item__text_features"
            )
        }

    from_text = decisions()
    assert len(from_text) == 40
    assert services.text_features_store(waiting) == 40
    assert services.text_features_store(waiting) == 0  # once per item
    candidates = features.waiting(waiting, judge, text=True)
    assert all(c.text_features is not None and c.responses == [] for c in candidates)
    assert decisions() == from_text
    long = fresh[0]  # k = 1000: a long pair
    assert from_text[long.pk][2]["response_chars_min"] > 1500
    # Read from the item's stored row, not copied into the decision; shown with it.
    stored = RouteDecision.objects.get(item=long).features
    assert "response_chars_min" not in stored
    assert stored["text_features"] == learning.TEXT_FEATURES_VERSION
    admin = UserFactory(is_staff=True)
    MembershipFactory(project=project, user=admin, role="admin")
    client = APIClient()
    client.force_authenticate(admin)
    url = f"/api/v1/projects/{project.slug}/items/{long.external_id}/route/"
    shown = client.get(url).json()["route_decision"]["features"]
    assert shown["response_chars_min"] == from_text[long.pk][2]["response_chars_min"]
    listed = client.get(f"/api/v1/projects/{project.slug}/routing/decisions/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert all("prompt_chars" in r["features"] for r in rows)

    # A row computed by an older text_features is not trusted.
    ItemTextFeatures.objects.filter(item=long).update(
        version=learning.TEXT_FEATURES_VERSION - 1, values={"response_chars_min": 0}
    )
    c = next(c for c in features.waiting(waiting, judge, text=True) if c.item_id == long.pk)
    assert c.text_features is None and c.responses == long.responses
    assert decisions() == from_text
    assert services.text_features_store(waiting) == 1
    row = ItemTextFeatures.objects.get(item=long)
    assert row.version == learning.TEXT_FEATURES_VERSION
    assert row.values == learning.text_features(long.prompt, long.responses)
