"""Judge runs through the real runner and the real SDKs, against tests/llm_server.py on
127.0.0.1: both orders and the inconsistent rule, parse retry, transient and permanent errors,
the budget, juries, rate limits and a run resumed after its worker died. Celery is eager; the
runner's threads use their own database connections, so these tests commit (transaction=True).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from annotate.models import Annotation, Judge
from judges import limits, runner, services
from judges.models import JudgeRun, JudgeSlot, Judgment, RateWindow, Verdict

from .factories import AnnotationFactory, ItemFactory, ProjectFactory
from .llm_server import Answer

pytestmark = pytest.mark.django_db(transaction=True)

GOOD, BAD = "The capital of France is Paris.", "France has no capital."


def knows_the_answer(request) -> Answer:
    """A judge free of position bias: it picks the response that says Paris, wherever it is."""
    user = next(m["content"] for m in request.body["messages"] if m["role"] == "user")
    first = re.search(r"\[Response A\]\n(.*?)\n\[End of response A\]", user, re.S).group(1)
    return Answer.json_verdict("A" if "Paris" in first else "B", strength=2)


def always_first(request) -> Answer:
    """A judge with full position bias: the first response shown always wins."""
    return Answer.json_verdict("A", strength=1)


@pytest.fixture
def project(db):
    return ProjectFactory(slug="paris", kind="pairwise")


def items(project, n=3):
    return [
        ItemFactory(
            project=project,
            external_id=f"q{i}",
            prompt="What is the capital of France?",
            responses=[
                {"id": "g", "text": GOOD, "model": "gpt-x"},
                {"id": "b", "text": BAD, "model": "other"},
            ][:: 1 if i % 2 == 0 else -1],
        )
        for i in range(n)
    ]


def judge_for(project, server, name="gpt", **data) -> Judge:
    return services.judge_save(
        project=project,
        data={
            "name": name,
            "backend": "openai_compat",
            "model_name": "gpt-x",
            "base_url": server.openai_url,
            "price_in_per_mtok": "2.5",
            "price_out_per_mtok": "10",
            "timeout_s": 2,
            **data,
        },
    )


def start(project, judges, selection="all", **kwargs) -> JudgeRun:
    run = services.run_start(project=project, judges=judges, selection=selection, **kwargs)
    run.refresh_from_db()
    return run


def test_both_orders_agree_so_the_verdict_is_a_judge_label(project, llm_server, eager_celery):
    llm_server.respond = knows_the_answer
    made = items(project)
    judge = judge_for(project, llm_server)
    run = start(project, [judge])
    assert run.status == JudgeRun.Status.DONE, run.error
    assert run.passes_total == 6 and Judgment.objects.filter(status="done").count() == 6
    # Each item was shown in both orders, in item terms both passes chose the Paris answer.
    for item in made:
        passes = Judgment.objects.filter(item=item).order_by("pass_index")
        assert [p.order for p in passes] == [
            [r["id"] for r in item.responses],
            [r["id"] for r in item.responses][::-1],
        ]
        good = "A" if item.responses[0]["id"] == "g" else "B"
        assert [p.label["choice"] for p in passes] == [good, good]
        verdict = Verdict.objects.get(item=item)
        assert verdict.status == Verdict.Status.AGREED and verdict.label["choice"] == good
        annotation = verdict.annotation
        assert annotation.source == Annotation.Source.JUDGE and annotation.judge == judge
        assert annotation.label == verdict.label and annotation.judge_model == "gpt-x"
        assert set(json.loads(annotation.raw_output)) == {"0", "1"}
        assert annotation.tokens_in == sum(p.tokens_in for p in passes) > 0
        assert annotation.prompt_version == passes[0].prompt_version
    # Every call's cost, from the usage the server reported, to the cent and below.
    usage = llm_server.usage()
    judge.refresh_from_db()
    expected = limits.cost(judge, 0, 0)  # zero
    expected = sum(
        (limits.cost(judge, j.tokens_in, j.tokens_out) for j in Judgment.objects.all()), expected
    )
    assert judge.spent_usd == expected and judge.reserved_usd == 0
    server_cost = (usage["tokens_in"] * Decimal("2.5") + usage["tokens_out"] * 10) / 10**6
    assert abs(judge.spent_usd - server_cost) < Decimal("0.00001")
    assert usage["requests"] == 6


def test_orders_that_disagree_are_kept_as_inconsistent_and_not_exported(
    project, llm_server, eager_celery
):
    llm_server.respond = always_first
    items(project, 2)
    run = start(project, [judge_for(project, llm_server)])
    assert run.status == JudgeRun.Status.DONE
    verdicts = Verdict.objects.all()
    assert [v.status for v in verdicts] == ["inconsistent", "inconsistent"]
    assert not Annotation.objects.filter(source="judge").exists()
    # Both raw outputs are kept on the passes.
    assert Judgment.objects.exclude(raw_output="").count() == 4


def test_a_reply_that_does_not_parse_is_asked_once_more_then_kept_as_failed(
    project, llm_server, eager_celery
):
    llm_server.respond = knows_the_answer
    items(project, 1)
    llm_server.script(Answer.malformed(), Answer.malformed())
    run = start(project, [judge_for(project, llm_server, passes=1)])
    judgment = Judgment.objects.get()
    assert judgment.status == Judgment.Status.FAILED
    assert judgment.error.startswith("unparseable reply")
    assert judgment.raw_output.count('"choice": "A", "rationale": unfinished') == 2
    assert judgment.extra["parse_attempts"] == 2 and judgment.attempts == 2
    assert Verdict.objects.get().status == Verdict.Status.FAILED
    assert run.status == JudgeRun.Status.DONE  # a bad reply fails the pass, not the run


def test_a_reply_that_parses_on_the_second_ask_counts(project, llm_server, eager_celery):
    items(project, 1)
    llm_server.script(Answer.malformed(), Answer.bracketed("A"))
    start(project, [judge_for(project, llm_server, passes=1)])
    judgment = Judgment.objects.get()
    assert judgment.status == "done" and judgment.label["choice"] == "A"
    assert judgment.extra["parse_attempts"] == 2 and "---- retry ----" in judgment.raw_output


def test_transient_errors_are_retried_after_the_servers_retry_after(
    project, llm_server, eager_celery
):
    items(project, 1)
    llm_server.script(
        Answer.rate_limited("0.2"), Answer.server_error(500), Answer.json_verdict("A")
    )
    run = start(project, [judge_for(project, llm_server, passes=1)])
    assert run.status == JudgeRun.Status.DONE, run.error
    judgment = Judgment.objects.get()
    assert judgment.status == "done" and judgment.attempts == 3
    assert llm_server.usage()["requests"] == 3


def test_a_permanent_error_stops_the_run_with_its_message(
    project, llm_server, eager_celery, monkeypatch
):
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-secret-123")
    llm_server.api_key = "sk-the-right-one"
    items(project, 4)
    run = start(
        project,
        [judge_for(project, llm_server, api_key_env="JUDGE_TEST_KEY", max_concurrency=1)],
    )
    assert run.status == JudgeRun.Status.FAILED
    assert "401" in run.error and "sk-secret-123" not in run.error
    assert "sk-secret-123" not in "".join(Judgment.objects.values_list("error", flat=True))
    # It stopped: one call at a time, so the first 401 was the only one sent.
    assert llm_server.usage()["requests"] == 1
    assert Judgment.objects.filter(status="pending").exists()


def test_the_budget_is_never_exceeded(project, llm_server, eager_celery):
    llm_server.respond = knows_the_answer
    items(project, 10)
    judge = judge_for(project, llm_server, max_tokens=100, budget_usd="0.02")
    run = start(project, [judge])
    judge.refresh_from_db()
    assert run.status == JudgeRun.Status.FAILED and "budget reached" in run.error
    assert 0 < judge.spent_usd <= judge.budget_usd and judge.reserved_usd == 0
    done = Judgment.objects.filter(status="done").count()
    assert 0 < done < 20 and llm_server.usage()["requests"] == done
    # A later run refuses to start with the budget spent... once it is spent to the last call.
    assert Judgment.objects.filter(status="pending").count() == 20 - done


def test_a_jury_aggregates_its_members(project, llm_server, eager_celery):
    def by_model(request):
        if request.body["model"] == "biased":
            return always_first(request)
        return knows_the_answer(request)

    llm_server.respond = by_model
    items(project, 2)
    a = judge_for(project, llm_server, name="a", passes=1)
    b = judge_for(project, llm_server, name="b", passes=1, model_name="biased")
    c = judge_for(project, llm_server, name="c", passes=1)
    jury = services.judge_save(
        project=project, data={"name": "jury", "backend": "jury", "members": [a, b, c]}
    )
    run = start(project, [jury])
    assert run.status == JudgeRun.Status.DONE, run.error
    assert run.passes_total == 6  # the members call; the jury does not
    for verdict in Verdict.objects.filter(judge=jury).select_related("item"):
        good = "A" if verdict.item.responses[0]["id"] == "g" else "B"
        assert verdict.status == "agreed" and verdict.label["choice"] == good
        assert verdict.annotation.judge == jury
    agreements = sorted(Verdict.objects.filter(judge=jury).values_list("agreement", flat=True))
    # q0 shows Paris first (all three agree), q1 second (the biased member dissents).
    assert agreements[1] == 1.0 and agreements[0] < 1.0


def test_requests_per_minute_hold_across_calls(project, llm_server, eager_celery, monkeypatch):
    items(project, 3)
    judge = judge_for(project, llm_server, passes=1, requests_per_minute=2)
    waits = []
    monkeypatch.setattr(runner.time, "sleep", lambda s: waits.append(s))
    window = int(timezone.now().timestamp() // 60)
    RateWindow.objects.create(judge=judge, minute=window, requests=2)
    assert limits.take_rate(judge, 10) > 0  # full: wait for the next minute
    RateWindow.objects.filter(judge=judge).update(requests=1)
    assert limits.take_rate(judge, 10) == 0.0
    assert RateWindow.objects.get(judge=judge, minute=window).requests == 2
    # Opening a minute's window forgets the ones before the last.
    RateWindow.objects.filter(judge=judge).update(minute=window - 5)
    assert limits.take_rate(judge, 10) == 0.0
    assert list(RateWindow.objects.values_list("minute", "requests")) == [(window, 1)]


def test_a_run_whose_worker_died_resumes_without_judging_twice(project, llm_server, monkeypatch):
    llm_server.respond = knows_the_answer
    items(project, 3)
    judge = judge_for(project, llm_server)
    monkeypatch.setattr(services, "enqueue", lambda run: None)  # plan only
    run = services.run_start(project=project, judges=[judge], selection="all")
    # A worker judged the first item's two passes, then died holding the rest and all slots.
    dead, past = "dead@host:1", timezone.now() - timedelta(seconds=5)
    first = list(Judgment.objects.order_by("id")[:2])
    for j in first:
        Judgment.objects.filter(pk=j.pk).update(
            status="done", label={"choice": "A", "strength": 2, "rationale": ""}, finished_at=past
        )
    Judgment.objects.filter(status="pending").update(claimed_by=dead, claimed_until=past)
    limits.acquire_slots(judge, dead, judge.max_concurrency, lease_s=0)
    JudgeRun.objects.filter(pk=run.pk).update(status="running", heartbeat_at=past)
    # Its calls in flight had reserved money that nobody will settle.
    Judge.objects.filter(pk=judge.pk).update(reserved_usd=Decimal("0.5"))

    status = runner.run_work(run.pk, "judges", worker="new@host")
    assert status == JudgeRun.Status.DONE
    assert Judgment.objects.filter(status="done").count() == 6
    assert llm_server.usage()["requests"] == 4  # only the passes that were not done
    assert Verdict.objects.count() == 3 and Annotation.objects.filter(source="judge").count() == 3
    judge.refresh_from_db()
    # What the dead worker had reserved counts as spent (the provider may have billed it).
    calls = sum((j.cost_usd for j in Judgment.objects.all()), Decimal(0))
    assert judge.reserved_usd == 0 and judge.spent_usd == calls + Decimal("0.5")
    # The new worker gave back its slots; the dead one's ran out with their lease.
    assert not JudgeSlot.objects.filter(holder__startswith="new@host").exists()
    assert not JudgeSlot.objects.filter(leased_until__gt=timezone.now()).exists()


def test_selection_plans_only_what_it_names_and_never_twice(project, llm_server, monkeypatch):
    monkeypatch.setattr(services, "enqueue", lambda run: None)  # plan only
    made = items(project, 4)
    AnnotationFactory(item=made[0])
    judge = judge_for(project, llm_server)
    assert start(project, [judge], "human_labeled").items == 1
    assert start(project, [judge], "unlabeled").items == 3
    assert start(project, [judge], "ids", external_ids=["q1", "q9"]).items == 1
    assert Judgment.objects.count() == 8  # q1 was planned by the unlabeled run already
    with pytest.raises(services.ServiceError) as error:
        start(project, [judge], "ids")
    assert error.value.field == "external_ids"


def test_a_metadata_filter_selects_items_by_their_fields(project, llm_server, monkeypatch):
    """Text, numbers, booleans and a field inside an object, the same on both databases; with
    another selection, both must hold."""
    monkeypatch.setattr(services, "enqueue", lambda run: None)  # plan only
    made = items(project, 6)
    shapes = [
        {"domain": "math", "level": 3, "hard": True, "source": {"name": "arena"}},
        {"domain": "math", "level": 1, "hard": False, "source": {"name": "arena"}},
        {"domain": "code", "level": 3, "hard": True},
        {"domain": "Math", "level": "3"},
        {},
        {"domain": "math", "level": 3.0, "source": {"name": "other"}},
    ]
    for item, metadata in zip(made, shapes, strict=True):
        item.metadata = metadata
        item.save()
    AnnotationFactory(item=made[0])
    judge = judge_for(project, llm_server)

    assert _selected(project, judge, {"domain": "math"}) == {"q0", "q1", "q5"}
    assert _selected(project, judge, {"level": 3}) == {"q0", "q2", "q5"}  # not the text "3"
    assert _selected(project, judge, {"level": "3"}) == {"q3"}
    assert _selected(project, judge, {"hard": True}) == {"q0", "q2"}
    assert _selected(project, judge, {"source.name": "arena", "domain": "math"}) == {"q0", "q1"}
    assert _selected(project, judge, {"domain": "math"}, "unlabeled") == {"q1", "q5"}
    assert _selected(project, judge, {"domain": "biology"}) == set()
    for bad in ({"": 1}, {"a..b": 1}, {"domain": None}, {"domain": ["math"]}, ["domain"]):
        with pytest.raises(services.ServiceError) as error:
            start(project, [judge], "all", metadata_filter=bad)
        assert error.value.field == "metadata_filter"


def _selected(project, judge, conditions, selection="all") -> set[str]:
    """The external ids a run with this metadata filter plans (a new prompt version each time,
    so that earlier runs' passes do not count)."""
    judge.system_prompt = f"Judge well. ({Judgment.objects.count()})"
    judge.save()
    run = start(project, [judge], selection, metadata_filter=conditions)
    assert run.metadata_filter == conditions
    return set(run.judgments.values_list("item__external_id", flat=True))


def test_calibration_of_a_real_run_on_human_labelled_items(
    project, llm_server, eager_celery, client, alice
):
    """Humans labelled 4 items (3 for the Paris answer, 1 for the other); the judge picks Paris
    in both orders: agreement 3/4, no flips, first position wins half the passes."""
    from annotate.models import Role

    from .factories import MembershipFactory

    MembershipFactory(project=project, user=alice, role=Role.RESEARCHER)
    llm_server.respond = knows_the_answer
    made = items(project, 4)
    for n, item in enumerate(made):
        good = "A" if item.responses[0]["id"] == "g" else "B"
        other = "B" if good == "A" else "A"
        AnnotationFactory(item=item, label={"choice": other if n == 3 else good, "strength": 1})
    judge = judge_for(project, llm_server)
    run = start(project, [judge], "human_labeled")
    assert run.status == JudgeRun.Status.DONE and run.items == 4

    client.force_login(alice)
    url = f"/projects/{project.slug}/judges/{judge.pk}/calibration/"
    page = client.get(url).content.decode()
    assert "Not fit to label alone" in page  # 4 items are too few
    api = client.get(f"/api/v1/projects/{project.slug}/judges/{judge.pk}/calibration/").json()
    metrics = api["metrics"]
    assert metrics["agreement_without_ties"]["value"] == 0.75
    assert metrics["agreement_without_ties"]["n"] == 4
    assert metrics["position_consistency"]["value"] == 1.0
    assert metrics["flip_rate"]["value"] == 0.0
    assert metrics["first_position_wins"]["value"] == 0.5
    csv_text = client.get(url + "?format=csv").content.decode()
    assert csv_text.startswith("judge,gpt,prompt version,")
    # A prompt version the judge never ran under is refused, naming the ones it has.
    bad = client.get(f"/api/v1/projects/{project.slug}/judges/{judge.pk}/calibration/?version=nope")
    assert bad.status_code == 400 and "'nope'" in bad.json()["version"][0]
    assert api["version"] in bad.json()["version"][0]
    assert client.get(url + "?version=nope").status_code == 404


def ranks_by_quality(request) -> Answer:
    """A listwise judge free of position bias: ranks the shown responses by the digit in their
    text (higher first), whatever order they are shown in; "2" and "2" tie."""
    user = next(m["content"] for m in request.body["messages"] if m["role"] == "user")
    shown = re.findall(r"\[Response ([A-Z])\]\nanswer of quality (\d)", user)
    groups: dict[int, list[str]] = {}
    for letter, quality in shown:
        groups.setdefault(int(quality), []).append(letter)
    ranking = [g if len(g) > 1 else g[0] for _, g in sorted(groups.items(), reverse=True)]
    return Answer(text=json.dumps({"ranking": ranking, "rationale": "by quality"}))


def test_a_listwise_item_is_judged_in_a_second_shuffled_order(llm_server, eager_celery):
    project = ProjectFactory(slug="lists", kind="listwise")
    llm_server.respond = ranks_by_quality
    item = ItemFactory(
        project=project,
        responses=[
            {"id": "w", "text": "answer of quality 1"},
            {"id": "x", "text": "answer of quality 3"},
            {"id": "y", "text": "answer of quality 2"},
            {"id": "z", "text": "answer of quality 2"},
        ],
    )
    run = start(project, [judge_for(project, llm_server)])
    assert run.status == JudgeRun.Status.DONE, run.error
    first, second = Judgment.objects.filter(item=item).order_by("pass_index")
    assert first.order == ["w", "x", "y", "z"] and sorted(second.order) == first.order
    assert second.order != first.order
    verdict = Verdict.objects.get(item=item)
    assert verdict.status == "agreed"
    # The tie is kept as a group, whatever order each pass showed it in.
    ranking = verdict.label["ranking"]
    assert ranking[0] == "x" and sorted(ranking[1]) == ["y", "z"] and ranking[2] == "w"


def test_spans_from_an_anthropic_judge_land_on_exact_offsets(llm_server, eager_celery):
    project = ProjectFactory(slug="spans", kind="spans")
    text = "Paris is the capital of France 🇫🇷. It has 90 million people, cafe\u0301s and more."
    item = ItemFactory(project=project, responses=[{"id": "r", "text": text}])
    reply = {
        "spans": [
            {
                "response": "A",
                "quote": "It has 90 million people",
                "occurrence": None,
                "label": "unverifiable",
                "correction": "It has about 2 million people",
            },
            # Written in NFC by the judge; the response has NFD: found, offsets in the original.
            {"response": "A", "quote": "caf\u00e9s", "occurrence": None, "label": "irrelevant"},
        ],
        "missing": "",
    }
    llm_server.script(Answer(text="Here is my analysis:\n```json\n" + json.dumps(reply) + "\n```"))
    judge = services.judge_save(
        project=project,
        data={
            "name": "claude",
            "backend": "anthropic",
            "model_name": "claude-x",
            "base_url": llm_server.anthropic_url,
            "structured_output": "none",
        },
    )
    run = start(project, [judge])
    assert run.status == JudgeRun.Status.DONE, run.error
    request = llm_server.requests[-1]
    assert request.path == "/v1/messages" and request.body["system"].startswith("You are")
    spans = Verdict.objects.get(item=item).label["spans"]
    assert [text[s["start"] : s["end"]] for s in spans] == [
        "It has 90 million people",
        "cafe\u0301s",
    ]
    assert spans[0]["correction"] == "It has about 2 million people"
    assert Annotation.objects.get(source="judge").judge_model == "claude-x"


def test_a_run_silent_past_the_timeout_is_enqueued_again_and_finished(
    project, llm_server, eager_celery, monkeypatch, settings
):
    from judges import tasks

    llm_server.respond = knows_the_answer
    items(project, 2)
    judge = judge_for(project, llm_server)
    with monkeypatch.context() as plan_only:
        plan_only.setattr(services, "enqueue", lambda run: None)
        run = services.run_start(project=project, judges=[judge], selection="all")
    old = timezone.now() - timedelta(seconds=settings.JUDGES_HEARTBEAT_TIMEOUT + 1)
    JudgeRun.objects.filter(pk=run.pk).update(status="running", heartbeat_at=old)
    fresh = services.run_start(project=project, judges=[judge], selection="all")
    assert fresh.passes_total == 0  # everything is planned in the first run already

    assert tasks.resume_orphaned.delay().get() == [run.pk]
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.DONE and Verdict.objects.count() == 2
    assert tasks.resume_orphaned.delay().get() == []  # nothing left to resume
