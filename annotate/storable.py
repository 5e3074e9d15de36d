"""What every database stores alike, as JSON or text: one check for imports, the API and pages.

PostgreSQL refuses NUL characters in text and jsonb; no database encodes a lone surrogate as
UTF-8; orjson (which writes every import and export row) refuses integers past 64 bits and
values nested deeper than 254 levels. A value past any of these is refused where it comes in,
with the place it is at, instead of failing with a 500 where it is written or read back.
"""

from __future__ import annotations

import json
from typing import Any

# Deepest nesting of a JSON value we accept (a request body, an imported row, a field of
# either): far past any real metadata, well inside orjson's limit (254) and Python's stack.
MAX_JSON_DEPTH = 100
_INT_RANGE = (-(2**63), 2**64)
TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels"


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored (a NUL character, a lone surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)."
    return None


def printable(text: str) -> str:
    """`text` as it can be stored and shown, with NULs and lone surrogates escaped: to name a
    key that holds them in an error message."""
    return text.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")


def json_problem(value: Any, path: str = "", depth: int = 0) -> tuple[str, str] | None:
    """(where, why) for the first part of a parsed JSON value that cannot be stored: nested
    deeper than MAX_JSON_DEPTH (counting from `depth`, the value's own), a text or key per
    `text_problem`, a whole number past 64 bits; None when all of it can. `where` begins with
    `path`. Walks without recursion, so no depth makes it fail itself."""
    problem = _first_problem(value, path, depth)
    if problem and len(problem[0]) > 80:
        return problem[0][:80] + "…", problem[1]
    return problem


def _first_problem(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    stack: list[tuple[Any, str, int]] = [(value, path, depth)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                return where, problem
        elif isinstance(value, bool) or value is None or isinstance(value, float):
            continue
        elif isinstance(value, int):
            if not _INT_RANGE[0] <= value < _INT_RANGE[1]:
                return where, "holds a whole number too large to store (past 64 bits)."
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return where, f"is nested deeper than {MAX_JSON_DEPTH} levels."
            if isinstance(value, list):
                stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
                continue
            for key, inner in value.items():
                problem = text_problem(key) if isinstance(key, str) else None
                name = printable(key) if problem else str(key)
                inner_where = f"{where}.{name}" if where else name
                if problem:
                    return inner_where, "its key " + problem
                stack.append((inner, inner_where, depth + 1))
    return None


def too_deep(value: Any) -> bool:
    """Whether a parsed JSON value is nested deeper than MAX_JSON_DEPTH: level by level, only
    containers (a request body's every node is visited, so this is its cost)."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(MAX_JSON_DEPTH):
        if not level:
            return False
        inner = []
        for container in level:
            values = container.values() if isinstance(container, dict) else container
            inner.extend(v for v in values if isinstance(v, dict | list))
        level = inner
    return bool(level)


def loads(text: str | bytes) -> Any:
    """json.loads for JSON a client sent (a page's JSON field, a CSV cell): nesting past
    MAX_JSON_DEPTH is a JSONDecodeError like any other, never a RecursionError (a 500)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(TOO_DEEP, "", 0) from None
    if too_deep(value):
        raise json.JSONDecodeError(TOO_DEEP, "", 0)
    return value
