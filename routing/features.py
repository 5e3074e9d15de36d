"""What the router knows of items: their text, their prompt tags, and the router judge's
verdicts on them.

Reads only (selectors of the routing app). A verdict is the judge's latest on the item (any prompt
version); a reward model's margin is the smallest gap between two responses' rewards in its
pass (Judgment.extra["scores"]); a jury's agreement is on its verdict.
"""

from __future__ import annotations

from collections.abc import Iterable

from annotate.models import Item, Judge
from judges.models import Judgment, PromptTags, Verdict

from .policies import Candidate

CHUNK = 2000


def candidates(items: Iterable[Item], judge: Judge | None) -> list[Candidate]:
    """A Candidate per item, with the judge's verdict, margin and agreement where it has one."""
    items = list(items)
    out = [
        Candidate(item_id=i.pk, prompt=i.prompt, responses=i.responses, metadata=i.metadata)
        for i in items
    ]
    by_id = {c.item_id: c for c in out}
    ids = list(by_id)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        # The latest tags of each item, whichever judge wrote them.
        for item_id, tags in (
            PromptTags.objects.filter(item_id__in=chunk)
            .order_by("id")
            .values_list("item_id", "tags")
        ):
            by_id[item_id].tags = tags
        if judge is None:
            continue
        verdicts = Verdict.objects.filter(judge=judge, item_id__in=chunk).order_by("id")
        for item_id, status, agreement in verdicts.values_list("item_id", "status", "agreement"):
            by_id[item_id].verdict, by_id[item_id].jury_agreement = status, agreement
        if judge.backend == Judge.Backend.REWARD_MODEL:
            passes = Judgment.objects.filter(
                judge=judge, item_id__in=chunk, status=Judgment.Status.DONE
            ).order_by("id")
            for item_id, extra in passes.values_list("item_id", "extra"):
                by_id[item_id].margin = margin(extra.get("scores") or {})
    return out


def margin(scores: dict) -> float | None:
    """The smallest gap between two responses' rewards: how close the call was."""
    values = sorted(v for v in scores.values() if isinstance(v, int | float))
    if len(values) < 2:
        return None
    return min(b - a for a, b in zip(values, values[1:], strict=False))
