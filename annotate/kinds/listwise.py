"""Listwise: rank K responses, best first.

Canonical label: {"ranking": [response_id, ...]}; where the project allows ties, a tied group is a
nested list: {"ranking": ["b", ["a", "c"]]}.
"""

from .base import (
    KindError,
    count_responses,
    reject_unknown,
    require_dict,
    require_int,
    response_ids,
)

DEFAULT_CONFIG = {"max_responses": 8, "allow_ties": False}


def clean_config(config: dict) -> dict:
    config = {**DEFAULT_CONFIG, **require_dict(config, "config")}
    reject_unknown(config, set(DEFAULT_CONFIG), "config")
    config["max_responses"] = require_int(config["max_responses"], "config.max_responses", 2, 100)
    if not isinstance(config["allow_ties"], bool):
        raise KindError("config.allow_ties", "expected true or false")
    return config


def check_responses(responses: list[dict], config: dict) -> None:
    count_responses(responses, 2, config["max_responses"], "listwise")


def clean_label(label, responses: list[dict], config: dict) -> dict:
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
        raise KindError("label.ranking", f"is not a ranking of all responses: missing {missing}")
    return {"ranking": cleaned}


def _response_id(entry, ids: list[str], field: str) -> str:
    rid = str(entry) if isinstance(entry, int | str) and not isinstance(entry, bool) else None
    if rid not in ids:
        raise KindError(field, f"{entry!r} is not a response of this item (ids: {', '.join(ids)})")
    return rid
