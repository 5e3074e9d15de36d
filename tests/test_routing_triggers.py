"""What routes a project without anyone pressing "Route now": an import that leaves items
waiting for the router, and the judge run the router then starts. Through the real import,
runner and SDK against tests/llm_server.py on 127.0.0.1, Celery eager."""

from __future__ import annotations

import io
import json

import pytest

from annotate.models import Item
from annotate.services import item_import
from judges.models import JudgeRun, Verdict
from routing import services
from routing.models import RouteDecision

from .factories import ProjectFactory
from .test_judge_runs import judge_for, knows_the_answer

pytestmark = pytest.mark.django_db(transaction=True)


def jsonl(n: int, start: int = 0) -> io.BytesIO:
    rows = [
        {
            "id": f"q{k}",
            "prompt": "What is the capital of France?",
            "responses": ["The capital of France is Paris.", "France has no capital."],
        }
        for k in range(start, start + n)
    ]
    return io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())


def test_an_import_into_a_routed_project_is_judged_and_routed_on_its_own(llm_server, eager_celery):
    llm_server.respond = knows_the_answer
    project = ProjectFactory(slug="routed", kind="pairwise")
    judge = judge_for(project, llm_server, passes=2)
    services.policy_save(
        project=project,
        data={"policy": "confidence", "judge": judge, "audit_share": 0.0},
    )
    report = item_import(project=project, stream=jsonl(3), filename="batch.jsonl")
    assert report.created == 3
    # The import's routing pass found no verdicts and started the router judge; its finished
    # run routed the items: the judge agreed with itself in both orders, so judges keep them.
    run = JudgeRun.objects.get()
    assert run.status == "done" and run.selection == "routing"
    assert Verdict.objects.filter(status="agreed").count() == 3
    assert set(Item.objects.values_list("route", flat=True)) == {"judge"}
    assert set(RouteDecision.objects.values_list("trigger", flat=True)) == {
        f"after judge run {run.pk}"
    }


def test_an_import_into_a_project_never_routed_starts_nothing(llm_server, eager_celery):
    project = ProjectFactory(slug="plain", kind="pairwise")
    judge_for(project, llm_server)
    item_import(project=project, stream=jsonl(2), filename="batch.jsonl")
    assert set(Item.objects.values_list("route", flat=True)) == {"human"}
    assert not JudgeRun.objects.exists() and llm_server.usage()["requests"] == 0


def test_the_verdicts_of_a_routed_project_store_their_items_text_features(llm_server, eager_celery):
    """The judge's worker stores the judged items' text features as it writes their verdicts:
    the routing pass that follows reads those numbers, equal to what the text gives."""
    from routing import learning
    from routing.models import ItemTextFeatures

    llm_server.respond = knows_the_answer
    project = ProjectFactory(slug="routed", kind="pairwise")
    judge = judge_for(project, llm_server, passes=2)
    services.policy_save(project=project, data={"policy": "confidence", "judge": judge})
    item_import(project=project, stream=jsonl(3), filename="batch.jsonl")
    assert Verdict.objects.count() == 3
    stored = {f.item_id: f for f in ItemTextFeatures.objects.all()}
    assert set(stored) == set(Item.objects.values_list("id", flat=True))
    for item in Item.objects.all():
        row = stored[item.pk]
        assert row.version == learning.TEXT_FEATURES_VERSION
        assert row.values == learning.text_features(item.prompt, item.responses)
        assert row.values["response_ids"] == [r["id"] for r in item.responses]
        assert row.values["prompt_questions"] == 1


def test_a_project_never_routed_stores_no_text_features(llm_server, eager_celery):
    from judges import services as judge_services
    from routing.models import ItemTextFeatures

    llm_server.respond = knows_the_answer
    project = ProjectFactory(slug="plain", kind="pairwise")
    judge = judge_for(project, llm_server)
    item_import(project=project, stream=jsonl(2), filename="batch.jsonl")
    judge_services.run_start(project=project, judges=[judge], selection="all")
    assert Verdict.objects.count() == 2
    assert not ItemTextFeatures.objects.exists()


def test_text_features_that_fail_to_store_cost_the_judge_nothing(
    llm_server, eager_celery, monkeypatch, caplog
):
    """The pass computes what is missing; the judge's verdicts are written all the same."""
    from routing.models import ItemTextFeatures

    def broken(items):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "text_features_store", broken)
    llm_server.respond = knows_the_answer
    project = ProjectFactory(slug="routed", kind="pairwise")
    judge = judge_for(project, llm_server, passes=2)
    services.policy_save(
        project=project, data={"policy": "confidence", "judge": judge, "audit_share": 0.0}
    )
    item_import(project=project, stream=jsonl(2), filename="batch.jsonl")
    run = JudgeRun.objects.get()
    assert run.status == "done"
    assert Verdict.objects.filter(status="agreed").count() == 2
    assert not ItemTextFeatures.objects.exists()
    assert set(Item.objects.values_list("route", flat=True)) == {"judge"}
    assert "storing the text features" in caplog.text
