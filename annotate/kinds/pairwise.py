"""Pairwise: which of two responses is better (A, B or tie), by how much, and why.

Canonical label: {"choice": "A"|"B"|"tie", "strength": 1..3, "rationale": str}. A and B are the
item's first and second response as stored, whatever order the page showed them in.
"""

from .base import (
    KindError,
    count_responses,
    optional_str,
    reject_unknown,
    require_dict,
    require_int,
)

STRENGTHS = {1: "slightly better", 2: "clearly better", 3: "much better"}
DEFAULT_CONFIG = {"allow_tie": True, "require_rationale": False}


def clean_config(config: dict) -> dict:
    config = {**DEFAULT_CONFIG, **require_dict(config, "config")}
    reject_unknown(config, set(DEFAULT_CONFIG), "config")
    for key in DEFAULT_CONFIG:
        if not isinstance(config[key], bool):
            raise KindError(f"config.{key}", "expected true or false")
    return config


def check_responses(responses: list[dict], config: dict) -> None:
    count_responses(responses, 2, 2, "pairwise")


def clean_label(label, responses: list[dict], config: dict) -> dict:
    label = require_dict(label, "label")
    reject_unknown(label, {"choice", "strength", "rationale"})
    choice = label.get("choice")
    if isinstance(choice, str):
        choice = choice.strip()
        choice = "tie" if choice.lower() == "tie" else choice.upper()
    if choice not in ("A", "B", "tie"):
        raise KindError("label.choice", f"expected A, B or tie, got {label.get('choice')!r}")
    if choice == "tie" and not config["allow_tie"]:
        raise KindError("label.choice", "this project does not allow ties")
    if choice == "tie":
        strength = None
    elif label.get("strength") is None:
        raise KindError("label.strength", "is required when one response is better (1, 2 or 3)")
    else:
        strength = require_int(label["strength"], "label.strength", 1, 3)
    rationale = optional_str(label.get("rationale"), "label.rationale").strip()
    if config["require_rationale"] and not rationale:
        raise KindError("label.rationale", "this project asks for a rationale")
    return {"choice": choice, "strength": strength, "rationale": rationale}
