"""Listwise: rank K responses, best first.

Canonical label: {"ranking": [response_id, ...]}; a tied group is a nested list (unless the
project sets allow_ties to false): {"ranking": ["b", ["a", "c"]]}. Each lease shows the responses
in a random order.
"""

from __future__ import annotations

import re
from typing import Any

from .aggregate import aggregate_rankings, flat_ranking
from .base import (
    Kind,
    KindError,
    LabelInputError,
    bracketed,
    check_text,
    closed_object,
    count_responses,
    extract_json,
    id_of_letter,
    int_or_none,
    reject_unknown,
    require_dict,
    require_int,
    response_ids,
    shown_letters,
)

# A ranking written out, as judges fall back to: "C > A = B > D" (best first, "=" a tie).
_WRITTEN = re.compile(r"^\s*\w+(?:\s*[>=]\s*\w+)+\s*$")


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
    # Pass 1 shows a shuffle seeded by the item (the base class's judge_order): a ranking that
    # follows the order shown is caught when the two passes disagree.
    judge_passes = 2
    judge_template = (
        "Rank the {{ responses|length }} responses to the user's request below from best to "
        "worst.\n\n"
        "[User request]\n{{ prompt }}\n\n"
        "{% if reference %}[Reference answer]\n{{ reference }}\n\n{% endif %}"
        "{% for r in responses %}[Response {{ r.letter }}]\n{{ r.text }}\n[End of response "
        "{{ r.letter }}]\n\n{% endfor %}"
        "{% if guidelines %}[Guidelines]\n{{ guidelines }}\n\n{% endif %}"
        'Reply with JSON: {"ranking": the letters of all {{ responses|length }} responses '
        "({% for r in responses %}{{ r.letter }}{% if not forloop.last %}, {% endif %}"
        "{% endfor %}), best first"
        "{% if allow_ties %}, responses of equal quality together as one nested list of "
        "their letters{% endif %}, "
        '"rationale": one or two sentences}.'
    )

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

    # Judges: letters in the reply, ids in the label (a listwise label names responses by id,
    # so display and item terms are the same). A reply is JSON or, failing that, [[C > A = B]].

    def judge_context(self, shown: list[dict], config: dict) -> dict:
        return {"allow_ties": config["allow_ties"]}

    def judge_schema(self, shown: list[dict], config: dict) -> dict:
        letter = {"type": "string", "enum": list(shown_letters(shown))}
        entry = letter
        if config["allow_ties"]:
            entry = {"anyOf": [letter, {"type": "array", "items": letter}]}
        return closed_object(
            {"ranking": {"type": "array", "items": entry}, "rationale": {"type": "string"}}
        )

    def parse_judge_output(self, text: str, shown: list[dict], config: dict) -> dict:
        letters = shown_letters(shown)
        data = extract_json(text)
        if data is not None and "ranking" in data:
            ranking = data["ranking"]
            if isinstance(ranking, str) and _WRITTEN.match(ranking):
                ranking = _written_ranking(ranking)
            if not isinstance(ranking, list) or not ranking:
                raise KindError("ranking", f"expected a list of letters, got {ranking!r}")
            return {"ranking": _ranking_ids(ranking, letters)}
        written = {"".join(b.split()).upper() for b in bracketed(text) if _WRITTEN.match(b)}
        if len(written) > 1:
            raise KindError("ranking", f"the reply writes several rankings ({sorted(written)})")
        if written:
            return {"ranking": _ranking_ids(_written_ranking(written.pop()), letters)}
        raise KindError("ranking", 'no JSON object with a "ranking" and no [[C > A = B]]')

    def label_from_scores(
        self, scores: list[float], shown: list[dict], config: dict, tie_margin: float
    ) -> dict:
        """Best score first. Where the project allows ties, a response joins the tied group
        above it when its score is within `tie_margin` of that group's best: every two
        responses of a group are within the margin of each other."""
        order = sorted(zip(scores, response_ids(shown), strict=True), key=lambda p: -p[0])
        groups: list[tuple[float, list[str]]] = []
        for score, rid in order:
            if groups and config["allow_ties"] and groups[-1][0] - score <= tie_margin:
                groups[-1][1].append(rid)
            else:
                groups.append((score, [rid]))
        return {"ranking": flat_ranking([group for _, group in groups])}

    def label_from_aggregate(self, answer, responses: list[dict], config: dict) -> dict | None:
        """The aggregate ranking; None when it ties responses that the project does not let a
        ranking tie (the labels cancel out: they decide no order between them)."""
        if answer is None:
            return None
        ranking = answer["ranking"]
        if not config["allow_ties"] and any(isinstance(e, list) for e in ranking):
            return None
        return {"ranking": ranking}

    # Gold, aggregation, import, training.

    def preferred_response(self, label: dict, responses: list[dict]) -> str | None:
        ranking = label.get("ranking") or []
        first = ranking[0] if ranking else None
        if isinstance(first, list):
            first = first[0] if len(first) == 1 else None
        return first

    def gold_matches(self, label: dict, gold: dict) -> bool:
        # The order inside a tied group is the order it was shown in: it says nothing.
        return ranking_key(label.get("ranking")) == ranking_key(gold.get("ranking"))

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


def ranking_key(ranking: Any) -> tuple | None:
    """A canonical ranking as its tied groups, each a set: equal for the same ranking whatever
    the order inside a tie."""
    if not isinstance(ranking, list):
        return None
    return tuple(frozenset(e) if isinstance(e, list) else frozenset([e]) for e in ranking)


def _written_ranking(text: str) -> list:
    """ "C > A = B" as ["C", ["A", "B"]]."""
    groups = [[t.strip() for t in part.split("=")] for part in text.split(">")]
    return [group[0] if len(group) == 1 else group for group in groups]


def _ranking_ids(ranking: list, letters: dict[str, str]) -> list:
    """A reply's ranking of letters as one of ids; a group of one (as in [["B"], ["A", "C"]])
    is that response alone. Whether it ranks every response once is clean_label's."""
    ids = []
    for position, entry in enumerate(ranking):
        field = f"ranking[{position}]"
        if isinstance(entry, list):
            group = [id_of_letter(e, letters, field) for e in entry]
            if not group:
                raise KindError(field, "is an empty group")
            ids.append(group if len(group) > 1 else group[0])
        else:
            ids.append(id_of_letter(entry, letters, field))
    return ids


def _response_id(entry, ids: list[str], field: str) -> str:
    rid = str(entry) if isinstance(entry, int | str) and not isinstance(entry, bool) else None
    if rid not in ids:
        raise KindError(field, f"{entry!r} is not a response of this item (ids: {', '.join(ids)})")
    return rid
