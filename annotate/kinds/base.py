"""What every annotation kind provides, and the checks they share.

A kind is a module with:
  DEFAULT_CONFIG: dict
  clean_config(config) -> dict            defaults filled in; KindError if invalid
  check_responses(responses, config)      the item's shape for this kind; KindError if invalid
  clean_label(label, responses, config) -> dict   the canonical label; KindError if invalid
"""

from __future__ import annotations

from typing import Any

CHAT_ROLES = ("system", "user", "assistant", "tool")


class KindError(ValueError):
    """Bad input for a kind: names the field at fault and says why, in words for the user."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def require_dict(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise KindError(field, f"expected an object, got {type_name(value)}")
    return value


def require_int(value: Any, field: str, low: int, high: int) -> int:
    # bool is an int in Python; a label of `true` is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        # Digits as text ("3") are accepted; int() is the judge, isdigit() lets "²" through.
        try:
            number = int(value.strip()) if isinstance(value, str) else None
        except ValueError:
            number = None
        if number is None:
            raise KindError(field, f"expected a whole number from {low} to {high}, got {value!r}")
        value = number
    if not low <= value <= high:
        raise KindError(field, f"must be from {low} to {high}, got {value}")
    return value


def optional_str(value: Any, field: str, max_length: int = 20_000) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise KindError(field, f"expected text, got {type_name(value)}")
    if len(value) > max_length:
        raise KindError(field, f"is {len(value)} characters, over the limit of {max_length}")
    return value


def reject_unknown(data: dict, allowed: set[str], field: str = "label") -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise KindError(
            f"{field}.{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(allowed))})"
        )


def type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "true/false",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def clean_prompt(prompt: Any) -> str | list[dict]:
    """A prompt is non-empty text or a non-empty list of {role, content} chat messages."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise KindError("prompt", "is empty")
        return prompt
    if isinstance(prompt, list):
        if not prompt:
            raise KindError("prompt", "is an empty list of messages")
        return [clean_message(m, f"prompt[{i}]") for i, m in enumerate(prompt)]
    raise KindError("prompt", f"expected text or a list of chat messages, got {type_name(prompt)}")


def clean_message(message: Any, field: str) -> dict:
    message = require_dict(message, field)
    role, content = message.get("role"), message.get("content")
    if role not in CHAT_ROLES:
        raise KindError(f"{field}.role", f"expected one of {', '.join(CHAT_ROLES)}, got {role!r}")
    if not isinstance(content, str):
        raise KindError(f"{field}.content", f"expected text, got {type_name(content)}")
    return {"role": role, "content": content}


def clean_responses(responses: Any) -> list[dict]:
    """Responses as [{id, text, model}]; plain strings get ids "1", "2", ..."""
    if not isinstance(responses, list) or not responses:
        raise KindError("responses", f"expected a non-empty list, got {type_name(responses)}")
    cleaned, seen = [], set()
    for i, response in enumerate(responses):
        field = f"responses[{i}]"
        if isinstance(response, str):
            response = {"text": response}
        response = require_dict(response, field)
        reject_unknown(response, {"id", "text", "model"}, field)
        text = response.get("text")
        if not isinstance(text, str):
            raise KindError(f"{field}.text", f"expected text, got {type_name(text)}")
        rid = response.get("id")
        if rid is None:
            rid = i + 1
        elif isinstance(rid, bool) or not isinstance(rid, str | int):
            raise KindError(f"{field}.id", f"expected text or a number, got {type_name(rid)}")
        rid = str(rid).strip()
        if not rid:
            raise KindError(f"{field}.id", "is empty")
        if rid in seen:
            raise KindError(f"{field}.id", f"{rid!r} is used by two responses")
        seen.add(rid)
        model = response.get("model")
        if model is not None and not isinstance(model, str):
            raise KindError(f"{field}.model", f"expected text, got {type_name(model)}")
        cleaned.append({"id": rid, "text": text, "model": model or ""})
    return cleaned


def count_responses(responses: list[dict], low: int, high: int | None, kind: str) -> None:
    n = len(responses)
    if n < low or (high is not None and n > high):
        wanted = (
            f"exactly {low}" if low == high else f"{low} to {high}" if high else f"at least {low}"
        )
        raise KindError("responses", f"a {kind} item needs {wanted} responses, got {n}")


def response_ids(responses: list[dict]) -> list[str]:
    return [r["id"] for r in responses]
