"""A judge's prompt: its template (the kind's default or the admin's own), the context it is
filled with, and its version (a content hash stored on every judgment).

Templates use Django's template language without autoescaping: prompts are plain text, and an
admin's template can name variables and loop, but not run code.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.template import Context, Engine, TemplateSyntaxError

from annotate.kinds import get_kind
from annotate.kinds.base import Kind, response_letter

from .clients.base import Pass

ENGINE = Engine(autoescape=False)
# Item metadata keys read as the reference answer, in order.
REFERENCE_KEYS = ("reference", "reference_answer", "ref_answer", "gold_answer")


class PromptError(ValueError):
    """A template that does not parse or render; names the field and says why."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def texts(judge, kind: Kind) -> tuple[str, str]:
    """(system prompt, user template) the judge uses: its own, or the kind's default."""
    return judge.system_prompt or kind.judge_system, judge.prompt_template or kind.judge_template


def passes(judge, kind: Kind) -> int:
    """Display orders per item: the judge's setting, else the kind's; a reward model scores
    each response on its own, so order cannot sway it: one."""
    if judge.passes:
        return judge.passes
    return 1 if judge.backend == "reward_model" else kind.judge_passes


def version(judge, kind: Kind) -> str:
    """What makes two judgments comparable: the kind, both texts, the pass count and whether a
    reference is shown. A jury's version is its members' versions."""
    if judge.backend == "jury":
        parts = sorted(f"{m.pk}:{version(m, kind)}" for m in judge.members.all())
        return _digest("jury", kind.name, *parts)
    system, template = texts(judge, kind)
    extra = (
        f"rm:{judge.reward_model_id}:{judge.tie_margin}" if judge.backend == "reward_model" else ""
    )
    return _digest(
        kind.name, system, template, str(passes(judge, kind)), str(judge.use_reference), extra
    )


def check(system: str, template: str) -> None:
    """PromptError when the template does not parse."""
    for field, text in (("system_prompt", system), ("prompt_template", template)):
        try:
            ENGINE.from_string(text)
        except TemplateSyntaxError as error:
            raise PromptError(field, f"the template does not parse: {error}") from None


def build(judge, item, pass_index: int) -> Pass:
    """The call for one pass of one item: its messages, reply schema and display order."""
    project = item.project
    kind = get_kind(project.kind)
    config = project.config
    order = kind.judge_order(item.responses, pass_index, item.pk)
    by_id = {r["id"]: r for r in item.responses}
    shown = [by_id[rid] for rid in order]
    system, template = texts(judge, kind)
    context = {
        "prompt": prompt_text(item.prompt),
        "responses": [
            {
                "letter": response_letter(i),
                "id": r["id"],
                "text": r["text"],
                "model": r.get("model", ""),
            }
            for i, r in enumerate(shown)
        ],
        "reference": reference(item) if judge.use_reference else "",
        "guidelines": project.guidelines,
        "metadata": item.metadata or {},
        **kind.judge_context(shown, config),
    }
    messages = [
        {"role": "system", "content": _render(system, context, "system_prompt")},
        {"role": "user", "content": _render(template, context, "prompt_template")},
    ]
    return Pass(
        kind=kind.name,
        config=config,
        messages=messages,
        schema=kind.judge_schema(shown, config),
        prompt=item.prompt,
        shown=shown,
    )


def prompt_text(prompt: Any) -> str:
    """A chat prompt as a transcript; a text prompt as it is."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in prompt)


def reference(item) -> str:
    metadata = item.metadata or {}
    for key in REFERENCE_KEYS:
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return ""


def _render(text: str, context: dict, field: str) -> str:
    try:
        return ENGINE.from_string(text).render(Context(context))
    except TemplateSyntaxError as error:
        raise PromptError(field, f"the template does not parse: {error}") from None


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
