"""Listwise: rank K responses, best first.

Canonical label: {"ranking": [response_id, ...]}; a tied group is a nested list (unless the
project sets allow_ties to false): {"ranking": ["b", ["a", "c"]]}. Each lease shows the responses
in a random order.
"""

from __future__ import annotations

from typing import Any

from .aggregate import aggregate_rankings, flat_ranking
from .base import (
    Kind,
    KindError,
    LabelInputError,
    check_text,
    count_responses,
    int_or_none,
    reject_unknown,
    require_dict,
    require_int,
    response_ids,
)


class Listwise(Kind):
    name = "listwise"
    title = "Listwise (rank K responses)"
    # Ties allowed unless a project forbids them: real rankings often have them (180 of 478
    # in one published set), and refusing them makes annotators invent an order.
    DEFAULT_CONFIG = {"max_responses": 8, "allow_ties": True}
    shuffled = True
    objective = "listwise"
    scores_responses = True
    training_unit = "lists"

    def clean_config(self, config: dict) -> dict:
        config = self.with_defaults(config)
        config["max_responses"] = require_int(
            config["max_responses"], "config.max_responses", 2, 100
        )
        if not isinstance(config["allow_ties"], bool):
            raise KindError("config.allow_ties", "expected true or false")
        return config

    def check_responses(self, responses: list[dict], config: dict) -> None:
        count_responses(responses, 2, config["max_responses"], "listwise")

    def clean_label(self, label, responses: list[dict], config: dict) -> dict:
        label = require_dict(label, "label")
        reject_unknown(label, {"ranking"})
        ranking = label.get("ranking")
        if not isinstance(ranking, list) or not ranking:
            raise KindError("label.ranking", "expected a list of response ids, best first")
        ids, seen, cleaned = response_ids(responses), [], []
        for position, entry in enumerate(ranking):
            field = f"label.ranking[{position}]"
            if isinstance(entry, list):
                if not config["allow_ties"]:
                    raise KindError(field, "this project does not allow ties in a ranking")
                if len(entry) < 2:
                    raise KindError(field, "a tied group needs at least two responses")
                group = [_response_id(e, ids, field) for e in entry]
                seen.extend(group)
                cleaned.append(group if len(group) > 1 else group[0])
            else:
                rid = _response_id(entry, ids, field)
                seen.append(rid)
                cleaned.append(rid)
        duplicates = sorted({r for r in seen if seen.count(r) > 1})
        if duplicates:
            raise KindError("label.ranking", f"ranks {duplicates[0]!r} more than once")
        missing = [r for r in ids if r not in seen]
        if missing:
            raise KindError(
                "label.ranking", f"is not a ranking of all responses: missing {missing}"
            )
        return {"ranking": cleaned}

    # Form: one field rank-<id> per response (1 = best); order_confirmed = "1" when the order
    # shown is the answer.

    def label_from_post(self, data, responses: list[dict], config: dict) -> dict:
        ranks, errors, count = {}, {}, len(responses)
        for response in responses:
            field = f"rank-{response['id']}"
            rank = int_or_none(data.get(field))
            if rank is None or not 1 <= rank <= count:
                errors[field] = f"Give a rank from 1 (best) to {count}."
            else:
                ranks[response["id"]] = rank
        if not errors and not config["allow_ties"]:
            for response in responses:
                rid = response["id"]
                if list(ranks.values()).count(ranks[rid]) > 1:
                    errors[f"rank-{rid}"] = (
                        f"Rank {ranks[rid]} is given twice; ties are not allowed."
                    )
        if errors:
            raise LabelInputError(errors)
        ranking = []
        for rank in sorted(set(ranks.values())):
            group = [r["id"] for r in responses if ranks[r["id"]] == rank]
            ranking.append(group[0] if len(group) == 1 else group)
        # The order shown is drawn at random: kept as it is only when the annotator says so,
        # never by a submit that did not look (position bias).
        if ranking == [r["id"] for r in responses] and data.get("order_confirmed") != "1":
            raise LabelInputError(
                {"ranking": "Move at least one card, or tick “This order is right”."}
            )
        return {"ranking": ranking}

    def post_from_label(self, label: dict, responses: list[dict]) -> dict:
        # A stored label was looked at: its order is the annotator's, whatever the cards' order.
        values = {"order_confirmed": "1"}
        for position, entry in enumerate(label.get("ranking", []), start=1):
            for rid in entry if isinstance(entry, list) else [entry]:
                values[f"rank-{rid}"] = str(position)
        return values

    def form_field_for(self, field: str, responses: list[dict], config: dict) -> str:
        return "ranking" if field.startswith("ranking") else "form"

    def form_context(self, shown, config, responses, values, errors) -> dict:
        for entry in shown:
            entry["field"] = f"rank-{entry['response']['id']}"
            entry["rank"] = values.get(entry["field"], "")
            entry["error"] = errors.get(entry["field"], "")
        ranks = [int_or_none(entry["rank"]) for entry in shown]
        if None not in ranks:
            # A posted or stored ranking is shown in its order; ties sit next to each other.
            pairs = sorted(zip(ranks, shown, strict=True), key=lambda p: p[0])
            shown = [entry for _, entry in pairs]
        previous = None
        for entry in shown:
            entry["tied"] = bool(entry["rank"]) and entry["rank"] == previous
            previous = entry["rank"]
        return {"cards": shown}

    def label_summary(self, label: dict, letters: dict[str, str]) -> str:
        return " > ".join(
            " = ".join(letters.get(r, r) for r in entry)
            if isinstance(entry, list)
            else letters.get(entry, entry)
            for entry in label.get("ranking", [])
        )

    # Gold, aggregation, import, training.

    def gold_matches(self, label: dict, gold: dict) -> bool:
        return label.get("ranking") == gold.get("ranking")

    def aggregate(self, labels: list[dict], responses: list[dict], config: dict) -> tuple:
        """Answer: {"ranking": a canonical ranking (ties as nested lists), "scores":
        Bradley-Terry score per id}."""
        ids = response_ids(responses)
        groups, scores, agreement = aggregate_rankings(
            ids, [label.get("ranking", []) for label in labels]
        )
        return {"ranking": flat_ranking(groups), "scores": scores}, agreement

    def label_from_preference(
        self, *, chosen_id: str, rejected_id: str, responses: list[dict]
    ) -> dict:
        return {"ranking": [chosen_id, rejected_id]}

    def check_training_row(self, row: dict, where: str, **facts: Any) -> None:
        responses, ranking = row.get("responses"), row.get("ranking")
        if not isinstance(responses, list) or len(responses) < 2:
            raise KindError(where, "responses must be a list of at least 2 (a listwise export?)")
        for i, response in enumerate(responses):
            check_text(response, f"{where}: responses[{i}]")
        # Best first; a tied group is a list of indices: [2, [0, 3], 1] or, as a listwise export
        # writes it, [[2], [0, 3], [1]].
        flat = ranking_indices(ranking) if isinstance(ranking, list) else []
        whole = all(isinstance(i, int) and not isinstance(i, bool) for i in flat)
        if not whole or sorted(flat) != list(range(len(responses))):
            raise KindError(
                where,
                "ranking must order every response index once, best first (a tied group as a "
                "list of indices)",
            )


def rank_groups(ranking: list) -> list[list[int]]:
    """A training row's `ranking` (indices best first; a tied group as a list of indices, as a
    listwise export writes every entry: [[2], [0, 3], [1]]) as its tied groups, best first:
    [2, [0, 3], 1] -> [[2], [0, 3], [1]]."""
    groups = [list(entry) if isinstance(entry, list) else [entry] for entry in ranking]
    return [g for g in groups if g]


def ranking_indices(ranking: list) -> list:
    """The same ranking as one list of indices, best first; a tie group in its order."""
    return [i for group in rank_groups(ranking) for i in group]


def _response_id(entry, ids: list[str], field: str) -> str:
    rid = str(entry) if isinstance(entry, int | str) and not isinstance(entry, bool) else None
    if rid not in ids:
        raise KindError(field, f"{entry!r} is not a response of this item (ids: {', '.join(ids)})")
    return rid
