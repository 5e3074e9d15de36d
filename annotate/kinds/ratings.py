"""Multi-aspect ratings: a Likert score per aspect for each response, with an optional rationale.

Canonical label: {"responses": {response_id: {"aspects": {aspect: int}, "rationale": str}}}.
DESIGN.md's single-response shape {"aspects": {...}, "rationale": str} is accepted for items with
one response and stored in the canonical shape.
"""

from .base import (
    KindError,
    count_responses,
    optional_str,
    reject_unknown,
    require_dict,
    require_int,
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
DEFAULT_CONFIG = {"aspects": DEFAULT_ASPECTS, "scale": DEFAULT_SCALE}


def clean_config(config: dict) -> dict:
    config = {**DEFAULT_CONFIG, **require_dict(config, "config")}
    reject_unknown(config, set(DEFAULT_CONFIG), "config")
    aspects = config["aspects"]
    if not isinstance(aspects, list) or not aspects:
        raise KindError("config.aspects", "expected a non-empty list of aspects")
    cleaned, names = [], set()
    for i, aspect in enumerate(aspects):
        field = f"config.aspects[{i}]"
        aspect = {"name": aspect} if isinstance(aspect, str) else require_dict(aspect, field)
        name = aspect.get("name")
        if not isinstance(name, str) or not name.strip() or name in names:
            raise KindError(f"{field}.name", "is required and must be unique")
        names.add(name)
        cleaned.append({"name": name, "description": str(aspect.get("description") or "")})
    scale = require_dict(config["scale"], "config.scale")
    low = require_int(scale.get("min", 1), "config.scale.min", 0, 100)
    high = require_int(scale.get("max", 5), "config.scale.max", low + 1, 100)
    labels = require_dict(scale.get("labels") or {}, "config.scale.labels")
    return {"aspects": cleaned, "scale": {"min": low, "max": high, "labels": labels}}


def check_responses(responses: list[dict], config: dict) -> None:
    count_responses(responses, 1, None, "ratings")


def clean_label(label, responses: list[dict], config: dict) -> dict:
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


def _clean_rating(rating, field: str, config: dict) -> dict:
    rating = require_dict(rating, field)
    reject_unknown(rating, {"aspects", "rationale"}, field)
    scores = require_dict(rating.get("aspects"), f"{field}.aspects")
    names = [a["name"] for a in config["aspects"]]
    for name in scores:
        if name not in names:
            raise KindError(
                f"{field}.aspects.{name}", f"is not an aspect of this project ({', '.join(names)})"
            )
    low, high = config["scale"]["min"], config["scale"]["max"]
    cleaned = {}
    for name in names:
        if name not in scores:
            raise KindError(f"{field}.aspects.{name}", "is required")
        cleaned[name] = require_int(scores[name], f"{field}.aspects.{name}", low, high)
    return {
        "aspects": cleaned,
        "rationale": optional_str(rating.get("rationale"), f"{field}.rationale").strip(),
    }
