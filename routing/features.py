"""What the router knows of items: their text, their prompt tags, and the router judge's
verdicts on them.

Reads only (selectors of the routing app). A verdict is the judge's latest on the item (any prompt
version); a reward model's margin is the smallest gap between two responses' rewards in its
pass (Judgment.extra["scores"]); a jury's agreement is on its verdict.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from django.db.models import QuerySet, TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from annotate.models import Item, Judge
from judges.models import Judgment, PromptTags, Verdict

from .learning import TEXT_FEATURES_VERSION
from .policies import Candidate

CHUNK = 2000


def candidates(items: Iterable[Item], judge: Judge | None) -> list[Candidate]:
    """A Candidate per item, with the judge's verdict (and its label), margin and agreement
    where it has one."""
    return with_judgments(
        [
            Candidate(item_id=i.pk, prompt=i.prompt, responses=i.responses, metadata=i.metadata)
            for i in items
        ],
        judge,
        labels=True,
    )


def waiting(items: QuerySet[Item], judge: Judge | None, *, text: bool) -> list[Candidate]:
    """Candidates for the items of `items`, by id, read as plain rows (a routing pass reads a
    whole project's waiting items: no model instances); without `text`, ids only (the policy
    reads no prompt, response or metadata). With `text`, an item's stored text features
    (ItemTextFeatures, the current version) stand for its prompt and responses: those are read
    only for items without them."""
    rows = items.order_by("id")
    if not text:
        out = [
            Candidate(item_id=pk, prompt="", responses=[], metadata={})
            for pk in rows.values_list("id", flat=True)
        ]
        return with_judgments(out, judge, items)
    out, missing = [], {}
    rows = rows.annotate(meta=_text("metadata"), text=_text("text_features__values"))
    for pk, metadata, values, version in rows.values_list(
        "id", "meta", "text", "text_features__version"
    ):
        c = Candidate(item_id=pk, prompt="", responses=[], metadata=loads(metadata))
        if version == TEXT_FEATURES_VERSION:
            c.text_features = loads(values)
        else:
            missing[pk] = c
        out.append(c)
    ids = list(missing)
    for at in range(0, len(ids), CHUNK):
        chunk = Item.objects.filter(pk__in=ids[at : at + CHUNK])
        for pk, prompt, responses in chunk.values_list("id", "prompt", "responses"):
            missing[pk].prompt, missing[pk].responses = prompt, responses
    return with_judgments(out, judge, items, labels=True)


def with_judgments(
    out: list[Candidate],
    judge: Judge | None,
    items: QuerySet[Item] | None = None,
    *,
    labels: bool = False,
) -> list[Candidate]:
    """The candidates with their prompt tags and the judge's verdict, margin and agreement (and
    with `labels` the verdict's label). `items`, when given, is the queryset the candidates
    came from: each table is then read in one query joined to it, not in chunks of ids."""
    by_id = {c.item_id: c for c in out}
    kind = judge.project.kind if judge is not None else ""
    if items is not None:
        scopes = [{"item_id__in": items.order_by().values("id")}]
    else:
        ids = list(by_id)
        scopes = [{"item_id__in": ids[at : at + CHUNK]} for at in range(0, len(ids), CHUNK)]
    for scope in scopes:
        # The latest tags of each item, whichever judge wrote them.
        tags = PromptTags.objects.filter(**scope).order_by("id").values_list("item_id", "tags")
        for item_id, value in tags:
            by_id[item_id].tags = value
        if judge is None:
            continue
        verdicts = Verdict.objects.filter(judge=judge, **scope).order_by("id")
        columns = ("item_id", "status", "agreement") + (("text",) if labels else ())
        verdicts = verdicts.annotate(text=_text("label")) if labels else verdicts
        for item_id, status, agreement, *label in verdicts.values_list(*columns):
            c = by_id[item_id]
            c.verdict, c.jury_agreement, c.kind = status, agreement, kind
            c.judge_label = loads(label[0]) if label and label[0] is not None else None
        if judge.backend == Judge.Backend.REWARD_MODEL:
            passes = Judgment.objects.filter(
                judge=judge, status=Judgment.Status.DONE, **scope
            ).order_by("id")
            for item_id, scores in passes.values_list("item_id", KT("extra__scores")):
                by_id[item_id].margin = margin(loads(scores) if scores else {})
    return out


def _text(field: str) -> Cast:
    """A JSON column read as its text, for orjson (`loads`): the JSONField's own json.loads was
    a third of a 100,000-item pass's reading time."""
    return Cast(field, TextField())


def loads(text: str | None):
    return orjson.loads(text) if text is not None else None


def margin(scores: dict) -> float | None:
    """The smallest gap between two responses' rewards: how close the call was."""
    values = sorted(v for v in scores.values() if isinstance(v, int | float))
    if len(values) < 2:
        return None
    return min(b - a for a, b in zip(values, values[1:], strict=False))
