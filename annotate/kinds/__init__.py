"""Annotation kinds: one module each, the same three functions (see base.py)."""

from types import ModuleType

from . import listwise, pairwise, ratings, spans
from .base import KindError, clean_prompt, clean_responses

KINDS: dict[str, ModuleType] = {
    "pairwise": pairwise,
    "listwise": listwise,
    "spans": spans,
    "ratings": ratings,
}


def get_kind(name: str) -> ModuleType:
    try:
        return KINDS[name]
    except KeyError:
        raise KindError("kind", f"unknown kind {name!r} (one of {', '.join(KINDS)})") from None


def clean_item(kind: str, config: dict, prompt, responses) -> tuple:
    """Validate an item's prompt and responses for a kind; returns them cleaned."""
    prompt = clean_prompt(prompt)
    responses = clean_responses(responses)
    get_kind(kind).check_responses(responses, config)
    return prompt, responses


__all__ = ["KINDS", "KindError", "clean_item", "get_kind"]
