"""Prompt tags: what kind of request a prompt is, written by an LLM judge on request.

"Hybrid Preferences" (Miranda et al. 2024, HyPER) found descriptive features of the prompt the
most useful for predicting where a language model's preference label differs from people's:
subject of expertise, expertise level, safety concern, complexity of the user's intents,
open-endedness and format constraints. A judge run with purpose "tags" asks the judge for them,
once per item (one pass: the responses are not shown, so there is no order to swap); the
runner stores the answer as PromptTags, and the learned router (routing/) reads them as
categorical features. Every value is one of a closed list, so the features are one-hot columns.
"""

from __future__ import annotations

import hashlib

from annotate.kinds.base import KindError, closed_object, extract_json

from .clients.base import Pass
from .prompts import prompt_text

TAGS: dict[str, tuple[str, ...]] = {
    "subject": (
        "computer science",
        "mathematics",
        "natural sciences",
        "medicine and health",
        "social sciences",
        "humanities",
        "law",
        "business and finance",
        "creative writing",
        "everyday life",
        "other",
    ),
    "expertise": ("general public", "basic domain knowledge", "expert domain knowledge"),
    "safety_concern": ("none", "low", "moderate", "high"),
    "intents": ("simple", "moderate", "complex"),
    "open_endedness": ("none", "low", "moderate", "high"),
    "format_constraints": ("no", "yes"),
}

DESCRIPTIONS = {
    "subject": "the subject of expertise the request belongs to",
    "expertise": "the expertise a person needs to judge answers to it well",
    "safety_concern": "how much answering it raises safety concerns",
    "intents": "how complex the user's intents are (one clear ask, or several goals)",
    "open_endedness": "how open-ended it is (one right answer: none; many good answers: high)",
    "format_constraints": "whether it asks for a particular format, length or style",
}

SYSTEM = (
    "You describe requests that people send to an AI assistant. You do not answer them. "
    "Reply with one JSON object and nothing else."
)

TEMPLATE = """Describe the request below. For each field give exactly one of the allowed values.

{fields}

[Request]
{prompt}
[End of request]

Reply with a JSON object with the keys {keys}."""


def _fields_text() -> str:
    return "\n".join(
        f"- {name}: {DESCRIPTIONS[name]}; one of: {', '.join(values)}"
        for name, values in TAGS.items()
    )


def version() -> str:
    """What makes two taggings comparable: the prompt texts and the allowed values."""
    text = "\0".join([SYSTEM, TEMPLATE, _fields_text()])
    return "tags-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def schema() -> dict:
    return closed_object({name: {"type": "string", "enum": list(v)} for name, v in TAGS.items()})


def build(item) -> Pass:
    """The call that tags one item's prompt."""
    user = TEMPLATE.format(
        fields=_fields_text(), prompt=prompt_text(item.prompt), keys=", ".join(TAGS)
    )
    return Pass(
        kind=item.project.kind,
        config=item.project.config,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        schema=schema(),
        prompt=item.prompt,
        shown=[],
    )


def parse(text: str) -> dict:
    """The tags in a reply; KindError naming the first missing or unknown value (the runner
    asks once more, as for a label that does not parse)."""
    data = extract_json(text)
    if data is None:
        raise KindError("tags", "the reply holds no JSON object")
    tags = {}
    for name, allowed in TAGS.items():
        value = data.get(name)
        if isinstance(value, bool):
            value = "yes" if value else "no"
        if not isinstance(value, str):
            raise KindError(name, f"missing (one of: {', '.join(allowed)})")
        folded = " ".join(value.lower().replace("_", " ").split())
        if folded not in allowed:
            raise KindError(name, f"{value!r} is not one of: {', '.join(allowed)}")
        tags[name] = folded
    return tags
