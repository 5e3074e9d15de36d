"""judges.calibration: a judge's report against the human labels, numbers computed by hand.

Pairwise scenario (judge model "gpt-4o-2024-08-06", two passes: pass 0 shows [a, b], pass 1
[b, a]; pass labels in item terms; H = human choices, majority in brackets):

item  H              maj    passes       verdict        len a/b  own model
 1    A A B          A      A  A         agreed A       20/10    a (judge's name inside)
 2    B B            B      B  B         agreed B       10/30    a and b: left out
 3    A B B          B      A  A         agreed A       20/10    a (inside the judge's name)
 4    tie tie A      tie    tie tie      agreed tie     10/10
 5    A tie tie      tie    A  A         agreed A       10/10
 6    A B            split  B  B         agreed B       10/10
 7    A A            A      A  B         inconsistent   10/10    (a flip)
 8    B              B      A  tie       inconsistent   10/10    (not a flip)
 9    A A A          A      B  B         agreed B       10/30    b
10    B B A          B      fail B       failed         10/10
11    A A            A      A  A         agreed A       15/15    "" (never the judge's)
"""

from __future__ import annotations

import csv
import io
import math

import pytest
from django.template.loader import render_to_string

from annotate.kinds import get_kind
from annotate.models import Annotation, Judge
from judges import calibration
from judges.models import JudgeRun, Judgment, Verdict

from .factories import ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

VERSION = "v2"
LLAMA = "llama-3-8b"


def _humans():
    return [UserFactory(username=f"rater{i}") for i in range(3)]


def _item(project, n, lengths=(10, 10), models=(LLAMA, LLAMA)):
    responses = [
        {"id": rid, "text": "x" * length, "model": model}
        for rid, length, model in zip(("a", "b"), lengths, models, strict=True)
    ]
    return ItemFactory(project=project, external_id=f"i{n}", responses=responses)


def _label(choice):
    return {"choice": choice, "strength": None, "rationale": ""}


def _human_labels(item, users, choices, source="human"):
    for user, choice in zip(users, choices, strict=False):
        Annotation.objects.create(
            item=item,
            source=source,
            annotator=user if source == "human" else None,
            kind=item.project.kind,
            label=_label(choice),
        )


def _judged(run, judge, item, passes, version=VERSION):
    """Judgments (pass i shows the item's order reversed for odd i) and the verdict."""
    ids = [r["id"] for r in item.responses]
    for i, choice in enumerate(passes):
        Judgment.objects.create(
            run=run,
            item=item,
            judge=judge,
            pass_index=i,
            prompt_version=version,
            order=ids[::-1] if i % 2 else ids,
            status="failed" if choice is None else "done",
            label=None if choice is None else _label(choice),
        )
    if None in passes:
        status, label = "failed", None
    elif len(set(passes)) == 1:
        status, label = "agreed", _label(passes[0])
    else:
        status, label = "inconsistent", None
    Verdict.objects.create(
        run=run, item=item, judge=judge, prompt_version=version, status=status, label=label
    )


@pytest.fixture
def pairwise_judge():
    project = ProjectFactory(kind="pairwise")
    judge = Judge.objects.create(project=project, name="gpt", model_name="gpt-4o-2024-08-06")
    run = JudgeRun.objects.create(project=project, selection="human_labeled")
    users = _humans()
    gpt = ("OpenAI/GPT-4o-2024-08-06", "gpt-4o", "GPT-4O-2024-08-06")
    rows = [
        # n, humans, passes, lengths, models
        (1, "A A B", "A A", (20, 10), (gpt[0], LLAMA)),
        (2, "B B", "B B", (10, 30), ("gpt-4o", "gpt-4o")),
        (3, "A B B", "A A", (20, 10), (gpt[1], LLAMA)),
        (4, "tie tie A", "tie tie", (10, 10), (LLAMA, LLAMA)),
        (5, "A tie tie", "A A", (10, 10), (LLAMA, LLAMA)),
        (6, "A B", "B B", (10, 10), (LLAMA, LLAMA)),
        (7, "A A", "A B", (10, 10), (LLAMA, LLAMA)),
        (8, "B", "A tie", (10, 10), (LLAMA, LLAMA)),
        (9, "A A A", "B B", (10, 30), (LLAMA, gpt[2])),
        (10, "B B A", "- B", (10, 10), (LLAMA, LLAMA)),
        (11, "A A", "A A", (15, 15), ("", "")),
    ]
    items = {}
    for n, humans, passes, lengths, models in rows:
        item = items[n] = _item(project, n, lengths, models)
        _human_labels(item, users, humans.split())
        _judged(run, judge, item, [None if p == "-" else p for p in passes.split()])
    # Not counted: labels imported with the data (they would make item 1's majority B), an
    # older prompt version's verdict, an item with no verdict, a verdict with no human label.
    _human_labels(items[1], [None, None, None], ["B", "B", "B"], source="imported")
    old = _item(project, 20)
    _human_labels(old, users, ["A"])
    _judged(run, judge, old, ["B", "B"], version="v1")
    _human_labels(_item(project, 21), users, ["A"])
    _judged(run, judge, _item(project, 22), ["A", "A"])
    # The latest version is the one of the latest verdict: v2 again after this one.
    _judged(run, judge, _item(project, 23), ["A", "A"], version="v2")
    return judge


def _values(report):
    return {key: (m["value"], m["n"]) for key, m in report["metrics"].items()}


def test_pairwise_counts_and_agreement(pairwise_judge):
    report = calibration.report(pairwise_judge)
    assert report["version"] == VERSION
    assert [v["version"] for v in report["versions"]] == ["v2", "v1"]
    # 11 items with human labels and a v2 verdict; item 6's majority is split: left out.
    assert report["counts"] == {
        "items": 11,
        "agreed": 8,
        "inconsistent": 2,
        "failed": 1,
        "split_left_out": 1,
    }
    values = _values(report)
    # With ties: items 1 2 3 4 5 9 11 compared; 1 2 4 11 agree.
    assert values["agreement_with_ties"] == (4 / 7, 7)
    # Without ties: 1 2 3 9 11 (4: both tie, 5: humans tie); 1 2 11 agree.
    assert values["agreement_without_ties"] == (3 / 5, 5)
    # Per human label of the agreed items 1 2 3 4 5 6 9 11:
    # 2/3 + 2/2 + 1/3 + 2/3 + 1/3 + 1/2 + 0/3 + 2/2 = 11 of 21.
    assert values["vote_agreement_with_ties"] == (11 / 21, 21)
    # Without ties (item 4's verdict is a tie; ties of humans dropped):
    # 2/3 + 2/2 + 1/3 + 1/1 + 1/2 + 0/3 + 2/2 = 9 of 16.
    assert values["vote_agreement_without_ties"] == (9 / 16, 16)
    assert report["metrics"]["agreement_with_ties"]["anchor"] == 0.66
    assert report["metrics"]["agreement_without_ties"]["anchor"] == 0.85


def test_pairwise_kappa_by_the_formula(pairwise_judge):
    # (judge, majority): 1 (A,A) 2 (B,B) 3 (A,B) 4 (tie,tie) 5 (A,tie) 9 (B,A) 11 (A,A).
    # p_o = 4/7; judge A 4, B 2, tie 1; humans A 3, B 2, tie 2:
    # p_e = (4*3 + 2*2 + 1*2) / 7^2 = 18/49; kappa = (p_o - p_e) / (1 - p_e) = 10/31.
    kappa = calibration.report(pairwise_judge)["metrics"]["kappa"]
    assert kappa["n"] == 7
    assert kappa["value"] == pytest.approx(10 / 31)


def test_pairwise_position_bias(pairwise_judge):
    values = _values(calibration.report(pairwise_judge))
    # Items judged in both orders, failed item 10 left out: 10; agreed 8; item 7 flips (A then
    # B); item 8 (A then tie) is inconsistent but no flip.
    assert values["position_consistency"] == (8 / 10, 10)
    assert values["flip_rate"] == (1 / 10, 10)
    # Decided passes: the 7 agreed decided items give one first-position win each out of two
    # (14); item 7 chose the first shown twice (2 of 2), item 8's pass 0 (1 of 1), item 10's
    # done pass 1 chose b shown first (1 of 1): 11 of 18.
    assert values["first_position_wins"] == (11 / 18, 18)


def test_pairwise_length_bias_and_self_preference(pairwise_judge):
    metrics = calibration.report(pairwise_judge)["metrics"]
    # Both decided: 1 2 3 9 11; 11's responses are equally long. Longer: a, b, a, b.
    # Judge chose A, B, A, B (4 of 4); humans' majority A, B, B, A (2 of 4).
    longer = metrics["longer_wins"]
    assert (longer["value"], longer["humans"], longer["n"]) == (1.0, 0.5, 4)
    assert longer["anchor"] == 0.68
    # The judge's model wrote a in 1 and 3 and b in 9 (2: both sides, left out; 11: no model).
    # The judge chose it 3 of 3 times; the humans' majority 1 of 3 (item 1).
    own = metrics["self_preference"]
    assert (own["value"], own["humans"], own["n"]) == (1.0, 1 / 3, 3)


def test_pairwise_fit_needs_enough_items(pairwise_judge):
    report = calibration.report(pairwise_judge)
    assert report["fit_to_label_alone"] is False
    assert "7 items compared (at least 50)" in report["reasons"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["Cohen's κ with the human majority (A / B / tie)"]["ok"] is False
    # Four items are too few to judge a length bias: not applied.
    assert checks["Longer answer wins (judge; humans on the same items)"]["ok"] is None


def test_older_version_on_request(pairwise_judge):
    report = calibration.report(pairwise_judge, version="v1")
    assert report["counts"]["items"] == 1
    assert _values(report)["agreement_with_ties"] == (0.0, 1)


def test_fit_judge_passes_every_check():
    project = ProjectFactory(kind="pairwise")
    judge = Judge.objects.create(project=project, name="good", model_name="m")
    run = JudgeRun.objects.create(project=project, selection="human_labeled")
    users = _humans()
    for n in range(50):
        choice = "AB"[n % 2]
        item = _item(project, n)
        _human_labels(item, users, [choice, choice])
        _judged(run, judge, item, [choice, choice])
    report = calibration.report(judge)
    values = _values(report)
    assert values["vote_agreement_without_ties"] == (1.0, 100)
    assert values["kappa"] == (1.0, 50)
    assert values["first_position_wins"] == (0.5, 100)
    assert report["fit_to_label_alone"] is True
    assert "50 items compared (at least 50)" in report["reasons"]


def test_nothing_to_count_is_none_not_one():
    project = ProjectFactory(kind="pairwise")
    judge = Judge.objects.create(project=project, name="idle")
    report = calibration.report(judge)
    assert report["version"] == ""
    assert all(m["value"] is None and m["n"] == 0 for m in report["metrics"].values())
    assert report["fit_to_label_alone"] is False


def test_single_pass_judge_has_no_position_consistency():
    project = ProjectFactory(kind="pairwise")
    judge = Judge.objects.create(project=project, name="once", passes=1)
    run = JudgeRun.objects.create(project=project, selection="human_labeled")
    item = _item(project, 1)
    _human_labels(item, _humans(), ["A"])
    _judged(run, judge, item, ["A"])
    metrics = calibration.report(judge)["metrics"]
    assert (metrics["agreement_with_ties"]["value"], metrics["agreement_with_ties"]["n"]) == (1, 1)
    # One order only: nothing says whether the order mattered.
    assert metrics["position_consistency"]["value"] is None
    assert metrics["position_consistency"]["n"] == 0
    # One category on both sides: kappa is 0/0, not a number.
    assert metrics["kappa"]["value"] is None
    assert metrics["kappa"]["note"] == "undefined: one category"


def test_listwise_tau_b_with_ties():
    project = ProjectFactory(kind="listwise")
    judge = Judge.objects.create(project=project, name="ranker", passes=2)
    run = JudgeRun.objects.create(project=project, selection="human_labeled")
    users = _humans()
    kind = get_kind("listwise")

    def listwise(n, humans, passes):
        responses = [{"id": rid, "text": rid, "model": ""} for rid in "abc"]
        item = ItemFactory(project=project, external_id=f"l{n}", responses=responses)
        for user, ranking in zip(users, humans, strict=False):
            Annotation.objects.create(
                item=item, source="human", annotator=user, kind="listwise", label=ranking
            )
        agreed = passes[0] == passes[1]
        for i, label in enumerate(passes):
            Judgment.objects.create(
                run=run,
                item=item,
                judge=judge,
                pass_index=i,
                prompt_version=VERSION,
                order=kind.judge_order(responses, i, item.pk),
                status="done",
                label=label,
            )
        Verdict.objects.create(
            run=run,
            item=item,
            judge=judge,
            prompt_version=VERSION,
            status="agreed" if agreed else "inconsistent",
            label=passes[0] if agreed else None,
        )

    abc = {"ranking": ["a", "b", "c"]}
    # 1: humans a > b = c, judge a > b > c. Pairs: ab, ac concordant; bc tied for the humans
    #    only. tau-b = (2 - 0) / sqrt((3 - 0) * (3 - 1)) = 2 / sqrt(6).
    listwise(1, [{"ranking": ["a", ["b", "c"]]}], [abc, abc])
    # 2: humans c > b > a twice, judge a > b > c: tau = -1; top-1 differs.
    cba = {"ranking": ["c", "b", "a"]}
    listwise(2, [cba, cba], [abc, abc])
    # 3: the judge ties all three: tau undefined, left out (and counted); top-1 differs.
    tied = {"ranking": [["a", "b", "c"]]}
    listwise(3, [abc], [tied, tied])
    # 4: passes disagree: inconsistent, in no agreement number.
    listwise(4, [abc], [abc, cba])

    report = calibration.report(judge)
    tau = report["metrics"]["kendall_tau"]
    assert tau["n"] == 2
    assert tau["value"] == pytest.approx((2 / math.sqrt(6) - 1) / 2)
    assert report["counts"]["tau_undefined"] == 1
    assert _values(report)["top1_agreement"] == (1 / 3, 3)
    assert _values(report)["position_consistency"] == (3 / 4, 4)
    assert report["fit_to_label_alone"] is False


def test_ratings_match_and_mean_difference():
    config = {"aspects": ["helpfulness", "honesty"]}
    project = ProjectFactory(kind="ratings", config=get_kind("ratings").clean_config(config))
    judge = Judge.objects.create(project=project, name="rater", passes=1)
    run = JudgeRun.objects.create(project=project, selection="human_labeled")
    item = ItemFactory(project=project, responses=[{"id": "r", "text": "t", "model": ""}])

    def rating(helpfulness, honesty):
        aspects = {"helpfulness": helpfulness, "honesty": honesty}
        return {"responses": {"r": {"aspects": aspects, "rationale": ""}}}

    for user, label in zip(_humans(), [rating(4, 5), rating(2, 5)], strict=False):
        Annotation.objects.create(
            item=item, source="human", annotator=user, kind="ratings", label=label
        )
    Judgment.objects.create(
        run=run, item=item, judge=judge, prompt_version=VERSION, order=["r"], status="done"
    )
    Verdict.objects.create(
        run=run, item=item, judge=judge, prompt_version=VERSION, status="agreed", label=rating(4, 4)
    )
    values = _values(calibration.report(judge))
    # The judge's label equals neither human label exactly.
    assert values["label_agreement"] == (0.0, 2)
    # Human means: helpfulness 3, honesty 5; judge 4 and 4.
    assert values["mean_abs_difference:helpfulness"] == (1.0, 1)
    assert values["mean_abs_difference:honesty"] == (1.0, 1)


def test_partial_and_csv(pairwise_judge):
    report = calibration.report(pairwise_judge)
    html = render_to_string("judges/_calibration.html", {"report": report})
    assert "Not fit to label alone." in html
    assert "Calibration of gpt against the humans" in html
    assert 'data-metric="kappa"' in html
    assert "57.1%" in html  # agreement with ties, 4/7
    assert "66.0%" in html and "MT-bench" in html
    assert "✗ 7 items compared (at least 50)" in html
    rows = {row[0]: row for row in csv.reader(io.StringIO(calibration.report_csv(report)))}
    assert rows["kappa"][2:4] == [f"{10 / 31:.6g}", "7"]
    assert rows["longer_wins"][2:6] == ["1", "4", "0.5", "0.68"]
    assert rows["fit_to_label_alone"] == ["fit_to_label_alone", "no"]


def test_queries_do_not_grow_with_items(pairwise_judge, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        calibration.report(pairwise_judge)
