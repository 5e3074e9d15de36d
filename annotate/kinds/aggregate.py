"""How several labels of one item become one answer, and how much the labels agree.

Agreement measures labellers against each other: an item with fewer than
MIN_LABELS_FOR_AGREEMENT labels has none (None, "n/a"), whatever the kind (`agreement_of`, the
one place of that rule; the pairwise export applies the same constant to whole columns).

- pairwise: majority vote over A / B / tie; agreement = the majority's share of the labels.
  No majority (A and B equally often) or a majority for "tie" gives no pair.
- rankings: Bradley-Terry scores fitted by Hunter's MM algorithm on every pair that each ranking
  orders (a tie in a ranking is half a win each way), with a weak prior of 0.1 wins each way per
  pair so that a perfect record still has a finite score. The aggregate is a ranking with tie
  groups: responses with equal scores (to 9 decimals) and equal Borda counts are tied (one label
  with a tie, or labels that cancel out), never ordered by their position in the item.
  Agreement = the share of (label, pair) comparisons in which the label relates the pair (better,
  worse or tied) as the aggregate does.
- ratings: mean score per (response, aspect); agreement = 1 - mean |score - mean| / scale width.
- spans: character-level majority per error type: a character is in a span of type L when more
  than half of the item's labels mark it with L; runs of such characters become the spans.
  Agreement = over the characters any label marked, length-weighted, the share of labels that
  agree with the majority decision (1.0 when no label marks anything).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence

MIN_LABELS_FOR_AGREEMENT = 2
BT_PRIOR = 0.1
BT_ITERATIONS = 200
BT_TOLERANCE = 1e-10


def agreement_of(n_labels: int, value: float) -> float | None:
    """An item's agreement: `value` (its kind's formula), or None (n/a) for a single label."""
    return value if n_labels >= MIN_LABELS_FOR_AGREEMENT else None


def majority_vote(choices: Sequence[str]) -> tuple[str | None, float | None]:
    """The most frequent choice and its share; None when two choices are equally frequent."""
    counts = Counter(choices).most_common()
    top, n = counts[0]
    share = agreement_of(len(choices), n / len(choices))
    if len(counts) > 1 and counts[1][1] == n:
        return None, share
    return top, share


def ranking_positions(ranking: list) -> dict[str, int]:
    """Position of each response id in a ranking, best = 0; a tied group shares a position."""
    positions = {}
    for position, entry in enumerate(ranking):
        for rid in entry if isinstance(entry, list) else [entry]:
            positions[str(rid)] = position
    return positions


def pairwise_wins(ids: list[str], rankings: list[dict[str, int]]) -> dict[tuple[str, str], float]:
    """wins[(a, b)]: how often a was ranked above b (half for a tie), over all rankings."""
    wins = {(a, b): 0.0 for a in ids for b in ids if a != b}
    for positions in rankings:
        for a, b in wins:
            if a in positions and b in positions:
                if positions[a] < positions[b]:
                    wins[(a, b)] += 1.0
                elif positions[a] == positions[b]:
                    wins[(a, b)] += 0.5
    return wins


def bradley_terry(ids: list[str], wins: dict[tuple[str, str], float]) -> dict[str, float]:
    """Bradley-Terry log-strengths (mean 0) by Hunter's (2004) MM iterations."""
    strength = dict.fromkeys(ids, 1.0)
    total_wins = {a: sum(wins[(a, b)] + BT_PRIOR for b in ids if b != a) for a in ids}
    games = {(a, b): wins[(a, b)] + wins[(b, a)] + 2 * BT_PRIOR for (a, b) in wins}
    for _ in range(BT_ITERATIONS):
        updated = {
            a: total_wins[a]
            / sum(games[(a, b)] / (strength[a] + strength[b]) for b in ids if b != a)
            for a in ids
        }
        log_mean = sum(math.log(v) for v in updated.values()) / len(ids)
        updated = {a: v / math.exp(log_mean) for a, v in updated.items()}
        delta = max(abs(updated[a] - strength[a]) for a in ids)
        strength = updated
        if delta < BT_TOLERANCE:
            break
    return {a: math.log(v) for a, v in strength.items()}


def aggregate_rankings(
    ids: list[str], labels: list[list]
) -> tuple[list[list[str]], dict, float | None]:
    """(ranking best first as tie groups, Bradley-Terry score per id, agreement) of several
    rankings; a group holds one id, or several that are tied, in item order.

    Remembered by value: an export meets the same few patterns (one ranking of K responses
    with the same ids) again and again, and the fit costs far more than the lookup."""
    frozen = tuple(tuple(tuple(e) if isinstance(e, list) else e for e in r) for r in labels)
    groups, scores, agreement = _aggregate_rankings(tuple(ids), frozen)
    return [list(g) for g in groups], dict(scores), agreement


def flat_ranking(groups: list[list[str]]) -> list:
    """Tie groups as a canonical listwise ranking: a lone id as itself, a tie as a list."""
    return [group[0] if len(group) == 1 else list(group) for group in groups]


@functools.lru_cache(maxsize=1 << 16)
def _aggregate_rankings(ids: tuple, labels: tuple) -> tuple[tuple, dict, float | None]:
    ids = list(ids)
    labels = [[list(e) if isinstance(e, tuple) else e for e in r] for r in labels]
    rankings = [ranking_positions(r) for r in labels]
    if len(ids) < 2:
        return (tuple(ids),) if ids else (), dict.fromkeys(ids, 0.0), agreement_of(len(labels), 1.0)
    wins = pairwise_wins(ids, rankings)
    scores = bradley_terry(ids, wins)
    borda = {a: sum(wins[(a, b)] for b in ids if b != a) for a in ids}
    key = {a: (-round(scores[a], 9), -borda[a]) for a in ids}
    groups: dict[tuple, list[str]] = {}
    for a in sorted(ids, key=lambda a: (key[a], ids.index(a))):
        groups.setdefault(key[a], []).append(a)
    order = tuple(tuple(g) for g in groups.values())
    position = {a: k for k, group in enumerate(order) for a in group}
    agree = compared = 0
    for positions in rankings:
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if a in positions and b in positions:
                    compared += 1
                    said = (positions[a] > positions[b]) - (positions[a] < positions[b])
                    agree += said == (position[a] > position[b]) - (position[a] < position[b])
    return order, scores, agreement_of(len(labels), agree / compared if compared else 1.0)


def mean_ratings(
    ids: list[str], aspects: list[str], labels: list[dict], low: int, high: int
) -> tuple[dict[str, dict[str, float]], float | None]:
    """Mean score per response and aspect over the labels, and the agreement."""
    if len(labels) == 1:  # the common case, the same numbers without the sums; agreement n/a
        given = labels[0].get("responses", {})
        means = {rid: given.get(rid, {}).get("aspects", {}) for rid in ids}
        return {rid: {a: s[a] / 1 for a in aspects if a in s} for rid, s in means.items()}, None
    means: dict[str, dict[str, float]] = {}
    deviation = count = 0.0
    for rid in ids:
        means[rid] = {}
        for aspect in aspects:
            scores = [
                lb["responses"][rid]["aspects"][aspect]
                for lb in labels
                if aspect in lb.get("responses", {}).get(rid, {}).get("aspects", {})
            ]
            if not scores:
                continue
            mean = sum(scores) / len(scores)
            means[rid][aspect] = mean
            deviation += sum(abs(s - mean) for s in scores)
            count += len(scores)
    width = max(high - low, 1)
    return means, agreement_of(len(labels), 1.0 - deviation / count / width if count else 1.0)


def majority_spans(
    spans_per_label: list[list[dict]], n_labels: int
) -> tuple[list[tuple[int, int, str]], float | None]:
    """Spans (start, end, label) that more than half of n_labels mark, and the agreement.

    spans_per_label holds, for each label of the item, its spans on one response.
    """
    cuts: set[int] = set()
    by_type: dict[str, list[list[tuple[int, int]]]] = {}
    for i, spans in enumerate(spans_per_label):
        for span in spans:
            cuts.update((span["start"], span["end"]))
            by_type.setdefault(span["label"], [[] for _ in spans_per_label])[i].append(
                (span["start"], span["end"])
            )
    bounds = sorted(cuts)
    runs: dict[str, list[list[int]]] = {}
    agree = marked = 0.0
    for start, end in zip(bounds, bounds[1:], strict=False):
        for name in sorted(by_type):
            votes = sum(any(s <= start and end <= e for s, e in ranges) for ranges in by_type[name])
            if not votes:
                continue
            marked += end - start
            agree += (end - start) * max(votes, n_labels - votes) / n_labels
            if 2 * votes > n_labels:
                run = runs.setdefault(name, [])
                if run and run[-1][1] == start:
                    run[-1][1] = end
                else:
                    run.append([start, end])
    kept = sorted((s, e, name) for name, run in runs.items() for s, e in run)
    return kept, agreement_of(n_labels, agree / marked if marked else 1.0)
