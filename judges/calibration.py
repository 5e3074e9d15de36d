"""A judge's calibration report: its verdicts against the humans' labels of the same items.

The items are the project's items with human labels (source "human") and a verdict of the judge
under one prompt version (the latest by default: judges.prompts.version changes with the
prompts, so verdicts of different versions are never mixed). Every number comes with its n (what
it was counted on); a number counted on nothing is None ("n/a"), never 1.0.

Pairwise, after MT-bench (Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot
Arena"):
- agreement with the human majority (kind.aggregate, the exporters' majority vote), with ties
  (A / B / tie all count) and without (only items where both decided A or B); items whose human
  majority is split evenly have no answer: left out, and counted (`split_left_out`). The same
  per human label ("vote"), as MT-bench counts agreement with experts: each human label of an
  item against the verdict. Only agreed verdicts are compared: an inconsistent verdict has no
  label (it is never exported either);
- Cohen's kappa (scikit-learn) between the verdict and the human majority over A / B / tie;
- position consistency: agreed / (agreed + inconsistent) over items judged in two orders or
  more; flip rate: the share of those items whose passes named opposite winners (A and B in
  item terms; a win against a tie is inconsistent, not a flip); first-position wins: of the
  passes that decided (A or B), the share that chose the response shown first (Judgment.order);
- length bias: on items where the human majority and the verdict both decided and the responses
  differ in length, how often the judge chose the longer one, next to how often the humans did;
- self-preference: on those items where one response (only one) was written by the judge's
  model (judge.model_name and response["model"] name each other, case-insensitively), how often
  the judge chose it, next to how often the humans did.
Listwise: Kendall tau-b (scipy) between the verdict's ranking and the human aggregate ranking,
per item, averaged; top-1 agreement; position consistency. Spans and ratings: the kind's
gold_matches of the verdict against each human label; ratings also the mean absolute
difference from the human mean, per aspect.

scipy and scikit-learn are imported where used (requirements-train.txt: the web image loads
neither at start; scripts/check_web_venv.py); without them the number is None with a note.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Max

from annotate.kinds import get_kind
from annotate.kinds.base import Kind
from annotate.models import Annotation, Item, Judge

from . import prompts
from .models import Judgment, Verdict


@dataclass(frozen=True)
class Anchor:
    """A published number to read ours against, with where it comes from."""

    value: float
    source: str


MT_BENCH = "MT-bench (Zheng et al. 2023)"
AGREEMENT_WITH_TIES = Anchor(
    0.66, f"{MT_BENCH}: GPT-4 vs experts with ties (S1); human vs human 63%"
)
AGREEMENT_WITHOUT_TIES = Anchor(
    0.85, f"{MT_BENCH}: GPT-4 vs experts without ties (S2); human vs human 81%"
)
HUMAN_HUMAN_WITH_TIES = Anchor(0.63, f"{MT_BENCH}: expert vs expert with ties (S1)")
HUMAN_HUMAN_WITHOUT_TIES = Anchor(0.81, f"{MT_BENCH}: expert vs expert without ties (S2)")
POSITION_CONSISTENCY = Anchor(0.65, f"{MT_BENCH}, Table 2: GPT-4 consistent on 65% of swaps")
# The two FastChat figures are as the judges brief gives them; not re-checked here.
FLIP_RATE = Anchor(0.129, "FastChat (lm-sys): GPT-4's winner flips on 12.9% of swapped pairs")
LONGER_WINS = Anchor(0.68, "FastChat (lm-sys): GPT-4 picks the longer answer 68% of the time")
FIRST_POSITION_WINS = Anchor(0.5, "no position bias: each response is shown first once")

# fit_to_label_alone: every check below must pass. A judge may label alone when, on enough
# items, it agrees with a human label as often as two humans agree with each other (MT-bench's
# human-human rates, counted per label as MT-bench counts them: the majority would flatter the
# judge), and neither the display order, the length nor its own model's name sways it.
MIN_ITEMS = 50  # items compared with the human majority (agreed verdict, majority decided)
MIN_VOTE_AGREEMENT_WITHOUT_TIES = HUMAN_HUMAN_WITHOUT_TIES.value  # 0.81
MIN_VOTE_AGREEMENT_WITH_TIES = HUMAN_HUMAN_WITH_TIES.value  # 0.63
# Landis & Koch (1977): above 0.40 is "moderate" agreement; below, chance explains too much.
MIN_KAPPA = 0.40
MIN_POSITION_CONSISTENCY = POSITION_CONSISTENCY.value  # at least GPT-4's on MT-bench
MAX_FLIP_RATE = FLIP_RATE.value  # no more flips than GPT-4's
MAX_FIRST_POSITION_SKEW = 0.10  # first-position wins within 40%..60%
# Length and self-preference: how much more than the humans the judge may favour the longer
# answer (its own model's answer), in win-rate points; checked only on MIN_BIAS_ITEMS or more.
MAX_LENGTH_BIAS = 0.10
MAX_SELF_PREFERENCE = 0.10
MIN_BIAS_ITEMS = 20

DECIDED = ("A", "B")
PAIRWISE_CHOICES = ["A", "B", "tie"]


@dataclass
class _Case:
    """One calibration item: its human labels, the judge's verdict and passes."""

    item: Item
    humans: list[dict]
    verdict: Verdict
    passes: list[Judgment] = field(default_factory=list)

    @property
    def label(self) -> dict | None:
        return self.verdict.label if self.verdict.status == Verdict.Status.AGREED else None


def report(judge: Judge, version: str | None = None) -> dict:
    """The calibration report of `judge` against the human labels of its project's items, for
    one prompt version (default: that of its latest verdict). A plain dict (JSON-able):
    metrics keyed by name, each {name, value, n, humans, anchor, source, note, shown...}."""
    kind = get_kind(judge.project.kind)
    versions = _versions(judge)
    if version is None:
        version = versions[0]["version"] if versions else ""
    elif version not in {v["version"] for v in versions}:
        known = ", ".join(v["version"] for v in versions) or "none yet"
        raise ValueError(f"{judge.name} has no verdicts under prompt version {version!r} ({known})")
    cases = _cases(judge, version)
    if kind.name == "pairwise":
        metrics, counts = _pairwise(cases, kind, judge)
    elif kind.name == "listwise":
        metrics, counts = _listwise(cases, kind)
    else:
        metrics, counts = _labels_match(cases, kind)
    counts = {**_status_counts(cases), **counts}
    checks = _checks_pairwise(metrics) if kind.name == "pairwise" else _checks_other(metrics, kind)
    fit = all(c["ok"] is not False for c in checks)
    # The reasons: the failed checks of an unfit judge, the passed ones of a fit one.
    reasons = [c["text"] for c in checks if c["ok"] is fit]
    return {
        "judge": judge.name,
        "judge_id": judge.pk,
        "model": judge.model_name,
        "kind": kind.name,
        "version": version,
        "current_version": prompts.version(judge, kind),
        "versions": versions,
        "other_versions": [v for v in versions if v["version"] != version],
        "counts": counts,
        "metrics": metrics,
        "checks": checks,
        "fit_to_label_alone": fit,
        "reasons": reasons,
    }


def report_csv(report: dict) -> str:
    """The report as CSV: one row per number (value, n, humans, anchor, source), then the
    verdict and each check."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["judge", report["judge"], "prompt version", report["version"]])
    writer.writerow(["metric", "name", "value", "n", "humans", "anchor", "anchor source", "note"])
    for key, m in report["metrics"].items():
        writer.writerow(
            [key, m["name"], _csv(m["value"]), m["n"], _csv(m["humans"]), _csv(m["anchor"])]
            + [m["source"], m["note"]]
        )
    writer.writerow(["fit_to_label_alone", "yes" if report["fit_to_label_alone"] else "no"])
    for check in report["checks"]:
        ok = {True: "pass", False: "fail", None: "not applicable"}[check["ok"]]
        writer.writerow(["check", check["name"], ok, "", "", "", "", check["text"]])
    return out.getvalue()


# Loading ------------------------------------------------------------------------------------


def _versions(judge: Judge) -> list[dict]:
    """The judge's prompt versions with their verdict counts, latest first."""
    rows = (
        Verdict.objects.filter(judge=judge)
        .values("prompt_version")
        .annotate(verdicts=Count("id"), last=Max("id"))
        .order_by("-last")
    )
    return [{"version": r["prompt_version"], "verdicts": r["verdicts"]} for r in rows]


def _cases(judge: Judge, version: str) -> list[_Case]:
    """The items with human labels and a verdict of the judge under `version`, by item id."""
    verdicts = Verdict.objects.filter(judge=judge, prompt_version=version)
    humans: dict[int, list[dict]] = defaultdict(list)
    for item_id, label in (
        Annotation.objects.filter(
            source=Annotation.Source.HUMAN, item_id__in=verdicts.values("item_id")
        )
        .order_by("id")
        .values_list("item_id", "label")
    ):
        humans[item_id].append(label)
    passes: dict[int, list[Judgment]] = defaultdict(list)
    for j in Judgment.objects.filter(
        judge=judge, prompt_version=version, item_id__in=list(humans)
    ).order_by("item_id", "pass_index"):
        passes[j.item_id].append(j)
    items = Item.objects.in_bulk(list(humans))
    by_item = {v.item_id: v for v in verdicts.filter(item_id__in=list(humans))}
    return [_Case(items[i], humans[i], by_item[i], passes[i]) for i in sorted(humans)]


def _status_counts(cases: list[_Case]) -> dict:
    counts = {"items": len(cases)}
    for status in Verdict.Status.values:
        counts[status] = sum(c.verdict.status == status for c in cases)
    return counts


# Pairwise -----------------------------------------------------------------------------------


def _pairwise(cases: list[_Case], kind: Kind, judge: Judge) -> tuple[dict, dict]:
    config = judge.project.config
    majority = {c.item.pk: kind.aggregate(c.humans, c.item.responses, config)[0] for c in cases}
    agreed = [c for c in cases if c.label is not None]
    compared = [c for c in agreed if majority[c.item.pk] is not None]
    pairs = [(c.label["choice"], majority[c.item.pk]) for c in compared]
    decided = [(j, h) for j, h in pairs if j in DECIDED and h in DECIDED]
    votes = [(c.label["choice"], h.get("choice")) for c in agreed for h in c.humans]
    decided_votes = [(j, h) for j, h in votes if j in DECIDED and h in DECIDED]
    metrics = {
        "agreement_with_ties": _metric(
            "Agreement with the human majority, with ties",
            *_agree(pairs),
            anchor=AGREEMENT_WITH_TIES,
        ),
        "agreement_without_ties": _metric(
            "Agreement with the human majority, without ties",
            *_agree(decided),
            anchor=AGREEMENT_WITHOUT_TIES,
        ),
        "vote_agreement_with_ties": _metric(
            "Agreement per human label, with ties",
            *_agree(votes),
            anchor=AGREEMENT_WITH_TIES,
            note="each human label against the verdict, as MT-bench counts",
        ),
        "vote_agreement_without_ties": _metric(
            "Agreement per human label, without ties",
            *_agree(decided_votes),
            anchor=AGREEMENT_WITHOUT_TIES,
            note="each human label against the verdict, as MT-bench counts",
        ),
        "kappa": _kappa(pairs),
        **_position(cases),
        **_pairwise_bias(compared, majority, judge),
    }
    split = sum(majority[c.item.pk] is None for c in agreed)
    return metrics, {"split_left_out": split}


def _agree(pairs: list[tuple]) -> tuple[float | None, int]:
    return _share(sum(a == b for a, b in pairs), len(pairs)), len(pairs)


def _kappa(pairs: list[tuple]) -> dict:
    name = "Cohen's κ with the human majority (A / B / tie)"
    if not pairs:
        return _metric(name, None, 0, kind="coefficient")
    from sklearn.metrics import (
        cohen_kappa_score,
    )  # imported here: the web process starts without it

    judge, humans = zip(*pairs, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one category only: 0/0, read as nan below
        value = float(cohen_kappa_score(judge, humans, labels=PAIRWISE_CHOICES))
    if math.isnan(value):
        return _metric(name, None, len(pairs), kind="coefficient", note="undefined: one category")
    return _metric(name, value, len(pairs), kind="coefficient")


def _position(cases: list[_Case]) -> dict:
    """Position consistency and flip rate (items judged in 2+ orders, failed ones left out),
    first-position wins (every decided pass)."""
    swapped = [
        c
        for c in cases
        if len(c.passes) >= 2 and c.verdict.status != Verdict.Status.FAILED and _all_done(c)
    ]
    consistent = sum(c.verdict.status == Verdict.Status.AGREED for c in swapped)
    flips = sum({"A", "B"} <= {p.label.get("choice") for p in c.passes} for c in swapped)
    first = [
        chosen == p.order[0]
        for c in cases
        for p in c.passes
        if p.status == Judgment.Status.DONE
        and p.label
        and p.order
        and (chosen := _chosen_id(p.label, c.item))
    ]
    return {
        "position_consistency": _metric(
            "Position consistency (passes agree)",
            _share(consistent, len(swapped)),
            len(swapped),
            anchor=POSITION_CONSISTENCY,
        ),
        "flip_rate": _metric(
            "Flip rate (orders name opposite winners)",
            _share(flips, len(swapped)),
            len(swapped),
            anchor=FLIP_RATE,
        ),
        "first_position_wins": _metric(
            "First-position wins (decided passes)",
            _share(sum(first), len(first)),
            len(first),
            anchor=FIRST_POSITION_WINS,
        ),
    }


def _all_done(case: _Case) -> bool:
    return all(p.status == Judgment.Status.DONE and p.label for p in case.passes)


def _chosen_id(label: dict, item: Item) -> str | None:
    """The id of the response a pass chose (its label is in item terms); None for a tie."""
    return get_kind("pairwise").preferred_response(label, item.responses)


def _pairwise_bias(compared: list[_Case], majority: dict, judge: Judge) -> dict:
    """Longer-answer and own-model win rates of the judge and of the humans, on the items
    where both decided."""
    longer, own = [], []
    for c in compared:
        judged, human = c.label["choice"], majority[c.item.pk]
        if judged not in DECIDED or human not in DECIDED:
            continue
        a, b = (len(r["text"]) for r in c.item.responses[:2])
        if a != b:
            side = "A" if a > b else "B"
            longer.append((judged == side, human == side))
        mine = [_same_model(judge.model_name, r.get("model") or "") for r in c.item.responses[:2]]
        if sum(mine) == 1:
            side = "A" if mine[0] else "B"
            own.append((judged == side, human == side))
    return {
        "longer_wins": _versus(
            "Longer answer wins (judge; humans on the same items)", longer, LONGER_WINS
        ),
        "self_preference": _versus(
            "Own model's answer wins (judge; humans on the same items)", own, None
        ),
    }


def _same_model(judge_model: str, response_model: str) -> bool:
    a, b = judge_model.strip().lower(), response_model.strip().lower()
    return bool(a and b) and (a in b or b in a)


def _versus(name: str, wins: list[tuple[bool, bool]], anchor: Anchor | None) -> dict:
    n = len(wins)
    judge = _share(sum(j for j, _ in wins), n)
    humans = _share(sum(h for _, h in wins), n)
    return _metric(name, judge, n, anchor=anchor, humans=humans)


# Listwise -----------------------------------------------------------------------------------


def _listwise(cases: list[_Case], kind: Kind) -> tuple[dict, dict]:
    from scipy.stats import kendalltau  # imported here: the web process starts without it

    taus, top1, undefined = [], [], 0
    for c in cases:
        if c.label is None:
            continue
        answer, _ = kind.aggregate(c.humans, c.item.responses, c.item.project.config)
        judged, human = _groups(c.label["ranking"]), _groups(answer["ranking"])
        top1.append(set(judged[0]) == set(human[0]))
        tau = _kendall(kendalltau, c.item.responses, judged, human)
        if tau is None:
            undefined += 1
        else:
            taus.append(tau)
    note = f"{undefined} item(s) left out: a ranking ties every response" if undefined else ""
    metrics = {
        "kendall_tau": _metric(
            "Kendall τ-b with the human aggregate ranking (mean per item)",
            sum(taus) / len(taus) if taus else None,
            len(taus),
            kind="coefficient",
            note=note,
        ),
        "top1_agreement": _metric(
            "Top-1 agreement (same best response or tied group)",
            _share(sum(top1), len(top1)),
            len(top1),
        ),
        "position_consistency": _position(cases)["position_consistency"],
    }
    return metrics, {"tau_undefined": undefined}


def _groups(ranking: list) -> list[list[str]]:
    return [list(entry) if isinstance(entry, list) else [entry] for entry in ranking]


def _kendall(kendalltau, responses: list[dict], judged: list, human: list) -> float | None:
    """tau-b between two rankings given as tie groups; None when undefined (one ranking ties
    every response)."""
    rank_j = {rid: g for g, group in enumerate(judged) for rid in group}
    rank_h = {rid: g for g, group in enumerate(human) for rid in group}
    ids = [r["id"] for r in responses]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant ranking: nan, read as undefined
        tau = kendalltau([rank_j[i] for i in ids], [rank_h[i] for i in ids]).statistic
    return None if math.isnan(tau) else float(tau)


# Spans and ratings --------------------------------------------------------------------------


def _labels_match(cases: list[_Case], kind: Kind) -> tuple[dict, dict]:
    agreed = [c for c in cases if c.label is not None]
    matches = [kind.gold_matches(c.label, h) for c in agreed for h in c.humans]
    metrics = {
        "label_agreement": _metric(
            "Agreement per human label (the kind's gold match)",
            _share(sum(matches), len(matches)),
            len(matches),
        ),
        "position_consistency": _position(cases)["position_consistency"],
    }
    if kind.name == "ratings":
        metrics.update(_rating_differences(agreed, kind))
    return metrics, {}


def _rating_differences(agreed: list[_Case], kind: Kind) -> dict:
    """Mean |judge's score - humans' mean score| per aspect, over (item, response)."""
    diffs: dict[str, list[float]] = defaultdict(list)
    for c in agreed:
        means, _ = kind.aggregate(c.humans, c.item.responses, c.item.project.config)
        judged = c.label.get("responses", {})
        for rid, aspects in means.items():
            for aspect, mean in aspects.items():
                score = judged.get(rid, {}).get("aspects", {}).get(aspect)
                if score is not None:
                    diffs[aspect].append(abs(score - mean))
    aspects = [a["name"] for a in agreed[0].item.project.config["aspects"]] if agreed else []
    return {
        f"mean_abs_difference:{aspect}": _metric(
            f"Mean |judge − human mean|: {aspect}",
            sum(diffs[aspect]) / len(diffs[aspect]) if diffs[aspect] else None,
            len(diffs[aspect]),
            kind="points",
        )
        for aspect in aspects
    }


# Fitness ------------------------------------------------------------------------------------


def _checks_pairwise(m: dict) -> list[dict]:
    n_items = m["agreement_with_ties"]["n"]
    return [
        _check("items", n_items >= MIN_ITEMS, f"{n_items} items compared (at least {MIN_ITEMS})"),
        _at_least(m["vote_agreement_without_ties"], MIN_VOTE_AGREEMENT_WITHOUT_TIES),
        _at_least(m["vote_agreement_with_ties"], MIN_VOTE_AGREEMENT_WITH_TIES),
        _at_least(m["kappa"], MIN_KAPPA),
        _at_least(m["position_consistency"], MIN_POSITION_CONSISTENCY),
        _at_most(m["flip_rate"], MAX_FLIP_RATE),
        _first_position(m["first_position_wins"]),
        _bias(m["longer_wins"], MAX_LENGTH_BIAS),
        _bias(m["self_preference"], MAX_SELF_PREFERENCE),
    ]


def _checks_other(m: dict, kind: Kind) -> list[dict]:
    first = m.get("top1_agreement") or m["label_agreement"]
    return [
        _check("items", first["n"] >= MIN_ITEMS, f"{first['n']} compared (at least {MIN_ITEMS})"),
        _at_least(m["position_consistency"], MIN_POSITION_CONSISTENCY),
        _check(
            "anchor",
            False,
            f"no published judge-vs-human anchor for {kind.name} judges: read the numbers "
            "and decide",
        ),
    ]


def _check(name: str, ok: bool | None, text: str) -> dict:
    return {"name": name, "ok": ok, "text": text}


def _at_least(metric: dict, low: float) -> dict:
    value = metric["value"]
    if value is None:
        return _check(metric["name"], False, f"{metric['name']}: n/a (n={metric['n']})")
    sign = "≥" if value >= low else "<"
    text = f"{metric['name']}: {_fmt(value, metric['kind'])} {sign} {_fmt(low, metric['kind'])}"
    return _check(metric["name"], value >= low, f"{text} (n={metric['n']})")


def _at_most(metric: dict, high: float) -> dict:
    value = metric["value"]
    if value is None:
        return _check(metric["name"], None, f"{metric['name']}: n/a (n={metric['n']})")
    sign = "≤" if value <= high else ">"
    text = f"{metric['name']}: {_fmt(value, 'share')} {sign} {_fmt(high, 'share')}"
    return _check(metric["name"], value <= high, f"{text} (n={metric['n']})")


def _first_position(metric: dict) -> dict:
    value = metric["value"]
    if value is None:
        return _check(metric["name"], None, f"{metric['name']}: n/a (n={metric['n']})")
    ok = abs(value - 0.5) <= MAX_FIRST_POSITION_SKEW
    low, high = 0.5 - MAX_FIRST_POSITION_SKEW, 0.5 + MAX_FIRST_POSITION_SKEW
    return _check(
        metric["name"],
        ok,
        f"{metric['name']}: {_fmt(value, 'share')} "
        f"{'within' if ok else 'outside'} {_fmt(low, 'share')}–{_fmt(high, 'share')} "
        f"(n={metric['n']})",
    )


def _bias(metric: dict, most: float) -> dict:
    """The judge's win rate at most `most` above the humans' on the same items."""
    judge, humans, n = metric["value"], metric["humans"], metric["n"]
    if judge is None or n < MIN_BIAS_ITEMS:
        return _check(
            metric["name"],
            None,
            f"{metric['name']}: not checked, {n} items (fewer than {MIN_BIAS_ITEMS})",
        )
    ok = judge - humans <= most
    text = (
        f"{metric['name']}: judge {_fmt(judge, 'share')} vs humans {_fmt(humans, 'share')} "
        f"({'within' if ok else 'more than'} {round(most * 100)} points, n={n})"
    )
    return _check(metric["name"], ok, text)


# Numbers ------------------------------------------------------------------------------------


def _share(hits: int, n: int) -> float | None:
    return hits / n if n else None


def _metric(
    name: str,
    value: float | None,
    n: int,
    *,
    anchor: Anchor | None = None,
    humans: float | None = None,
    kind: str = "share",
    note: str = "",
) -> dict:
    return {
        "name": name,
        "value": value,
        "n": n,
        "humans": humans,
        "anchor": anchor.value if anchor else None,
        "source": anchor.source if anchor else "",
        "note": note,
        "kind": kind,
        "shown": _fmt(value, kind),
        "humans_shown": _fmt(humans, kind) if humans is not None else "",
        "anchor_shown": _fmt(anchor.value, kind) if anchor else "",
    }


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "share":
        return f"{value * 100:.1f}%"
    return f"{value:.3f}" if kind == "coefficient" else f"{value:.2f}"


def _csv(value: Any) -> str:
    return "" if value is None else f"{value:.6g}"
