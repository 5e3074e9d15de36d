"""Annotation kinds: one `Kind` object each (see base.py), registered here by name.

Adding a kind: a module here with its Kind subclass and one entry in KINDS; its form partial
templates/annotate/kinds/<name>.html; `makemigrations` (Project.kind and Annotation.kind
choices follow KINDS: a choices-only migration). To train reward models on it: an Objective in
rewards/objectives.py (and rewards.models.Objective's choices).
"""

from .base import Kind, KindError, LabelInputError, clean_prompt, clean_responses
from .listwise import Listwise
from .pairwise import Pairwise
from .ratings import Ratings
from .spans import Spans

# In the order the project form offers them; a new kind is one more entry.
KINDS: dict[str, Kind] = {kind.name: kind for kind in (Pairwise(), Listwise(), Spans(), Ratings())}


def get_kind(name: str) -> Kind:
    """The Kind registered under `name`; KindError (field "kind") when there is none."""
    try:
        return KINDS[name]
    except KeyError:
        raise KindError("kind", f"unknown kind {name!r} (one of {', '.join(KINDS)})") from None


def objective_kind(objective: str) -> Kind:
    """The Kind whose export rows a reward-model objective trains on; KindError if none."""
    for kind in KINDS.values():
        if kind.objective == objective:
            return kind
    raise KindError("objective", f"no kind trains the {objective!r} objective")


def clean_item(kind: str, config: dict, prompt, responses) -> tuple:
    """Validate an item's prompt and responses for a kind; returns them cleaned."""
    prompt = clean_prompt(prompt)
    responses = clean_responses(responses)
    get_kind(kind).check_responses(responses, config)
    return prompt, responses


__all__ = [
    "KINDS",
    "Kind",
    "KindError",
    "LabelInputError",
    "clean_item",
    "get_kind",
    "objective_kind",
]
