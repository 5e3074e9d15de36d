"""Multi-aspect ratings: a Likert score per aspect for each response, with an optional rationale.

Canonical label: {"responses": {response_id: {"aspects": {aspect: int}, "rationale": str}}}.
DESIGN.md's single-response shape {"aspects": {...}, "rationale": str} is accepted for items with
one response and stored in the canonical shape.
"""

from __future__ import annotations

import math
from typing import Any

from .aggregate import mean_ratings
from .base import (
    Kind,
    KindError,
    LabelInputError,
    Vocabulary,
    bracketed,
    closed_object,
    count_responses,
    extract_json,
    id_of_letter,
    int_or_none,
    optional_str,
    reject_unknown,
    reply_text,
    require_dict,
    require_int,
    response_ids,
    response_letter,
    shown_letters,
    words,
)

# UltraFeedback's aspects.
DEFAULT_ASPECTS = [
    {"name": "instruction_following", "description": "Does it do what the prompt asks?"},
    {"name": "truthfulness", "description": "Is it free of false or made-up claims?"},
    {"name": "honesty", "description": "Does it express uncertainty where it should?"},
    {"name": "helpfulness", "description": "Is it informative and useful?"},
]
DEFAULT_SCALE = {
    "min": 1,
    "max": 5,
    "labels": {"1": "very poor", "3": "acceptable", "5": "excellent"},
}


class Ratings(Kind):
    name = "ratings"
    title = "Multi-aspect ratings"
    DEFAULT_CONFIG = {"aspects": DEFAULT_ASPECTS, "scale": DEFAULT_SCALE}
    shuffled = True
    objective = "ratings"
    judge_template = (
        "Rate {% if responses|length > 1 %}each response{% else %}the response{% endif %} to "
        "the user's request below on every aspect listed, with a whole number from "
        "{{ scale.min }} to {{ scale.max }}.\n\n"
        "[User request]\n{{ prompt }}\n\n"
        "{% if reference %}[Reference answer]\n{{ reference }}\n\n{% endif %}"
        "{% for r in responses %}[Response {{ r.letter }}]\n{{ r.text }}\n[End of response "
        "{{ r.letter }}]\n\n{% endfor %}"
        "[Aspects]\n{% for a in aspects %}- {{ a.name }}"
        "{% if a.description %}: {{ a.description }}{% endif %}\n{% endfor %}\n"
        "[Scale]\n{{ scale.min }} to {{ scale.max }}"
        "{% for p in scale_points %}\n{{ p.value }}: {{ p.label }}{% endfor %}\n\n"
        "{% if guidelines %}[Guidelines]\n{{ guidelines }}\n\n{% endif %}"
        'Reply with JSON: {"ratings": an object with an entry for every response ('
        '{% for r in responses %}"{{ r.letter }}"{% if not forloop.last %}, {% endif %}'
        "{% endfor %}), each an object with a score for every aspect ("
        '{% for a in aspects %}"{{ a.name }}"{% if not forloop.last %}, {% endif %}'
        '{% endfor %}), "rationale": one or two sentences}.'
    )

    def clean_config(self, config: dict) -> dict:
        config = self.with_defaults(config)
        aspects = config["aspects"]
        if not isinstance(aspects, list) or not aspects:
            raise KindError("config.aspects", "expected a non-empty list of aspects")
        cleaned = []
        for i, aspect in enumerate(aspects):
            field = f"config.aspects[{i}]"
            aspect = {"name": aspect} if isinstance(aspect, str) else require_dict(aspect, field)
            name = aspect.get("name")
            if not isinstance(name, str) or not name.strip():
                raise KindError(f"{field}.name", "is required")
            cleaned.append({"name": name, "description": str(aspect.get("description") or "")})
        Vocabulary([aspect["name"] for aspect in cleaned], "config.aspects")
        scale = require_dict(config["scale"], "config.scale")
        low = require_int(scale.get("min", 1), "config.scale.min", 0, 100)
        high = require_int(scale.get("max", 5), "config.scale.max", low + 1, 100)
        labels = require_dict(scale.get("labels") or {}, "config.scale.labels")
        return {"aspects": cleaned, "scale": {"min": low, "max": high, "labels": labels}}

    def check_responses(self, responses: list[dict], config: dict) -> None:
        count_responses(responses, 1, None, "ratings")

    def clean_label(self, label, responses: list[dict], config: dict) -> dict:
        label = require_dict(label, "label")
        if "aspects" in label and len(responses) == 1:
            label = {"responses": {responses[0]["id"]: label}}
        reject_unknown(label, {"responses"})
        rated = require_dict(label.get("responses"), "label.responses")
        ids = [r["id"] for r in responses]
        missing = [rid for rid in ids if rid not in rated]
        if missing:
            raise KindError("label.responses", f"rate every response: missing {missing}")
        for rid in rated:
            if rid not in ids:
                raise KindError(f"label.responses.{rid}", "is not a response of this item")
        return {
            "responses": {
                rid: _clean_rating(rated[rid], f"label.responses.{rid}", config) for rid in ids
            }
        }

    # Form: rating-<id>-<aspect> and rationale-<id> per response.

    def label_from_post(self, data, responses: list[dict], config: dict) -> dict:
        low, high = config["scale"]["min"], config["scale"]["max"]
        rated, errors = {}, {}
        for response in responses:
            rid, scores = response["id"], {}
            for aspect in config["aspects"]:
                field = f"rating-{rid}-{aspect['name']}"
                score = int_or_none(data.get(field))
                if score is None or not low <= score <= high:
                    errors[field] = f"Rate {words(aspect['name'])} from {low} to {high}."
                scores[aspect["name"]] = score
            rated[rid] = {"aspects": scores, "rationale": data.get(f"rationale-{rid}", "")}
        if errors:
            raise LabelInputError(errors)
        return {"responses": rated}

    def post_from_label(self, label: dict, responses: list[dict]) -> dict:
        values = {}
        for rid, rating in (label.get("responses") or {}).items():
            for name, score in rating.get("aspects", {}).items():
                values[f"rating-{rid}-{name}"] = str(score)
            values[f"rationale-{rid}"] = rating.get("rationale", "")
        return values

    def form_field_for(self, field: str, responses: list[dict], config: dict) -> str:
        for response in responses:
            rid = response["id"]
            if field == f"responses.{rid}.rationale":
                return f"rationale-{rid}"
            for aspect in config["aspects"]:
                if field == f"responses.{rid}.aspects.{aspect['name']}":
                    return f"rating-{rid}-{aspect['name']}"
        return "form"

    def form_context(self, shown, config, responses, values, errors) -> dict:
        scale = config["scale"]
        points = [
            {"value": v, "label": str(scale["labels"].get(str(v), ""))}
            for v in range(scale["min"], scale["max"] + 1)
        ]
        for entry in shown:
            rid = entry["response"]["id"]
            entry["aspects"] = [
                {
                    **aspect,
                    "title": words(aspect["name"]),
                    "field": f"rating-{rid}-{aspect['name']}",
                    "value": values.get(f"rating-{rid}-{aspect['name']}", ""),
                    "error": errors.get(f"rating-{rid}-{aspect['name']}", ""),
                }
                for aspect in config["aspects"]
            ]
            entry["rationale_field"] = f"rationale-{rid}"
            entry["rationale"] = values.get(f"rationale-{rid}", "")
        return {"rows": shown, "points": points}

    def label_summary(self, label: dict, letters: dict[str, str]) -> str:
        scores = [s for r in (label.get("responses") or {}).values() for s in r["aspects"].values()]
        return f"mean {sum(scores) / len(scores):.1f}" if scores else ""

    # Judges: letters in the reply, ids in the label (display and item terms are the same). A
    # reply is JSON; a bare {letter: {aspect: score}} and, for one response rated on one
    # aspect, MT-bench's "Rating: [[4]]" are read as well. Its one rationale is every
    # response's: the label keeps a rationale per response only.

    def judge_context(self, shown: list[dict], config: dict) -> dict:
        scale = config["scale"]
        points = [
            {"value": v, "label": scale["labels"][str(v)]}
            for v in range(scale["min"], scale["max"] + 1)
            if str(v) in scale["labels"]
        ]
        return {"aspects": config["aspects"], "scale": scale, "scale_points": points}

    def judge_schema(self, shown: list[dict], config: dict) -> dict:
        low, high = config["scale"]["min"], config["scale"]["max"]

        def scores() -> dict:
            score = {"type": "integer", "minimum": low, "maximum": high}
            return closed_object({a["name"]: dict(score) for a in config["aspects"]})

        return closed_object(
            {
                "ratings": closed_object({letter: scores() for letter in shown_letters(shown)}),
                "rationale": {"type": "string"},
            }
        )

    def parse_judge_output(self, text: str, shown: list[dict], config: dict) -> dict:
        letters = shown_letters(shown)
        data = extract_json(text)
        if data is not None and "ratings" in data:
            ratings, rationale = data["ratings"], reply_text(data.get("rationale"))
        elif data and all(_is_letter(key, letters) for key in data):
            ratings, rationale = data, ""
        else:
            ratings, rationale = self._bracketed_score(text, shown, config), text.strip()
        ratings = require_dict(ratings, "ratings")
        aspects = Vocabulary([a["name"] for a in config["aspects"]], "config.aspects")
        rated: dict[str, dict] = {}
        for letter, scores in ratings.items():
            field = f"ratings.{letter}"
            rid = id_of_letter(letter, letters, field)
            if rid in rated:
                raise KindError(field, "rates a response a second time")
            rated[rid] = {
                "aspects": _judge_scores(require_dict(scores, field), field, aspects, config),
                "rationale": rationale,
            }
        return {"responses": rated}

    def _bracketed_score(self, text: str, shown: list[dict], config: dict) -> dict:
        scores = {b for b in bracketed(text) if b.isdecimal()}
        if len(shown) == 1 and len(config["aspects"]) == 1 and len(scores) == 1:
            return {response_letter(0): {config["aspects"][0]["name"]: int(scores.pop())}}
        if len(scores) > 1:
            raise KindError("ratings", f"the reply gives several scores ({sorted(scores)})")
        raise KindError("ratings", 'no JSON object with "ratings" ({letter: {aspect: score}})')

    def label_from_aggregate(self, answer, responses: list[dict], config: dict) -> dict | None:
        """The mean score of each response and aspect rounded to a point of the scale (half
        up: 3.5 is 4); None when one has no score."""
        names = [a["name"] for a in config["aspects"]]
        rated = {}
        for rid in response_ids(responses):
            means = (answer or {}).get(rid, {})
            if any(name not in means for name in names):
                return None
            scores = {name: math.floor(means[name] + 0.5) for name in names}
            rated[rid] = {"aspects": scores, "rationale": ""}
        return {"responses": rated}

    # Aggregation and training.

    def aggregate(self, labels: list[dict], responses: list[dict], config: dict) -> tuple:
        """Answer: the mean score {response id: {aspect: mean}} over the labels."""
        aspects = [a["name"] for a in config["aspects"]]
        low, high = config["scale"]["min"], config["scale"]["max"]
        return mean_ratings(response_ids(responses), aspects, labels, low, high)

    def check_training_row(self, row: dict, where: str, **facts: Any) -> None:
        aspects = facts.get("aspects")
        completions = row.get("completions")
        if not isinstance(completions, list) or not completions:
            raise KindError(where, "expected `completions` (is this a ratings export?)")
        for i, completion in enumerate(completions):
            if not isinstance(completion, dict) or not isinstance(completion.get("response"), str):
                raise KindError(where, f"completions[{i}] needs a `response` string")
            ratings = completion.get("ratings")
            if not isinstance(ratings, dict):
                raise KindError(where, f"completions[{i}] needs `ratings`")
            for aspect, value in ratings.items():
                if aspects is not None and aspect not in aspects:
                    raise KindError(where, f"aspect {aspect!r} is not one of {aspects}")
                if value is not None and not isinstance(value, int | float):
                    raise KindError(where, f"rating {aspect!r} must be a number, got {value!r}")


def _is_letter(key: str, letters: dict[str, str]) -> bool:
    try:
        id_of_letter(key, letters, "ratings")
    except KindError:
        return False
    return True


def _judge_scores(scores: dict, field: str, aspects: Vocabulary, config: dict) -> dict:
    """A reply's {aspect: score} for one response, aspects in the config's spelling; KindError
    for an aspect the project lacks or a score off the scale."""
    low, high = config["scale"]["min"], config["scale"]["max"]
    cleaned: dict[str, int] = {}
    for key, score in scores.items():
        name = aspects.canonical(key, f"{field}.{key}", "an aspect of this project")
        if name in cleaned:
            raise KindError(f"{field}.{key}", f"rates {name!r} a second time")
        # 4.0 is 4; 4.5 is no point of the scale, and require_int says so.
        if isinstance(score, float) and score.is_integer():
            score = int(score)
        cleaned[name] = require_int(score, f"{field}.{key}", low, high)
    return cleaned


def _clean_rating(rating, field: str, config: dict) -> dict:
    rating = require_dict(rating, field)
    reject_unknown(rating, {"aspects", "rationale"}, field)
    given = require_dict(rating.get("aspects"), f"{field}.aspects")
    aspects = Vocabulary([a["name"] for a in config["aspects"]], "config.aspects")
    scores = {}
    for key, score in given.items():
        name = aspects.canonical(key, f"{field}.aspects.{key}", "an aspect of this project")
        if name in scores:
            raise KindError(f"{field}.aspects.{key}", f"rates {name!r} a second time")
        scores[name] = score
    low, high = config["scale"]["min"], config["scale"]["max"]
    cleaned = {}
    for name in aspects:
        if name not in scores:
            raise KindError(f"{field}.aspects.{name}", "is required")
        cleaned[name] = require_int(scores[name], f"{field}.aspects.{name}", low, high)
    return {
        "aspects": cleaned,
        "rationale": optional_str(rating.get("rationale"), f"{field}.rationale").strip(),
    }
