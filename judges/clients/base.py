"""What every judge backend provides, and the one error type they raise.

A backend is a module in this package with a `JudgeClient` subclass, registered in
`judges.clients.BACKENDS` by name (the value stored in Judge.backend). The runner
(judges/services.py) hands it one `Pass` at a time (from up to Judge.max_concurrency threads; a
client must be safe to share between them) or, when its `batch_size` is over 1, a list of passes
(the reward-model backend scores a batch at once). A client never touches the database: it turns
a Pass into a Reply or raises JudgeError.

Errors: `JudgeError(permanent=False)` for what may pass if tried again (a timeout, a 429 with its
Retry-After, a 5xx, a dropped connection): the runner puts the pass back with a backoff.
`JudgeError(permanent=True)` for what will not (401, 403, 404 model, 400 request): the run stops
with the message on its page. The SDKs' own retries are off (max_retries=0): every attempt goes
through the runner's rate limiter and is counted.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


class JudgeError(Exception):
    """A judge call that gave no reply. `permanent`: trying again will not help.
    `retry_after`: seconds the server asked us to wait (429/503), if it said."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status


# Statuses that may pass if tried again; every other 4xx (401, 403, 404, 400, 422) will not.
TRANSIENT_STATUSES = frozenset({408, 409, 429})


def token_count(value) -> int:
    """A reply's token count as the server gave it: a whole number, else 0 (not counted)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def status_is_transient(status: int) -> bool:
    """A timeout, a conflict, a rate limit or any 5xx (including Anthropic's 529 overloaded)."""
    return status in TRANSIENT_STATUSES or status >= 500


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, or `retry-after` in seconds or as
    an HTTP date. None when it said nothing readable; never negative."""
    try:
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except (KeyError, TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - (time.time() if now is None else now))


def status_error(
    backend: str, status: int, server_message: str, headers: Mapping[str, str], *, secret: str
) -> JudgeError:
    """The JudgeError for an HTTP error reply: its status, the server's words (cut short, with
    `secret` blanked out: a 401 may echo the key it refused) and Retry-After."""
    # Redacted before it is cut short: a cut could split the key and leave half of it.
    said = redact(server_message, secret).strip()[:500]
    return JudgeError(
        f"{backend}: HTTP {status}" + (f": {said}" if said else ""),
        permanent=not status_is_transient(status),
        retry_after=retry_after_seconds(headers),
        status=status,
    )


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "[api key]") if secret else text


@dataclass(frozen=True)
class Settings:
    """A Judge row's settings as a client needs them (no ORM object crosses into a client)."""

    backend: str
    model: str
    base_url: str = ""
    api_key: str = ""  # read from the environment variable the judge names, never stored
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout_s: float = 60.0
    structured_output: str = "json_schema"  # json_schema | json_object | none
    options: dict = field(default_factory=dict)  # backend-specific (reward model id, tie margin)


@dataclass(frozen=True)
class Pass:
    """One call: an item shown in one order. `messages` is the rendered prompt
    ([{"role": "system"|"user", "content"}]); `schema` the reply's JSON Schema; `prompt` and
    `shown` the item itself (a reward model scores it directly, without the messages)."""

    kind: str
    config: dict
    messages: list[dict]
    schema: dict
    prompt: Any  # text or chat messages, as the item stores it
    shown: list[dict]  # the responses ({id, text, model}) in display order


@dataclass
class Reply:
    """A backend's answer to one pass: its text (parsed by the kind) and what it cost."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    model: str = ""  # the model that answered, as the server names it
    extra: dict = field(default_factory=dict)  # e.g. a reward model's scores


class JudgeClient:
    """One backend. Subclasses implement `judge` (and `judge_many` when batch_size > 1)."""

    name: ClassVar[str]
    title: ClassVar[str]
    # Whether the backend reads Settings.base_url / api_key (the judge form asks for them).
    remote: ClassVar[bool] = True
    # Passes per judge_many call; 1: the runner calls `judge` from a thread per slot.
    batch_size: ClassVar[int] = 1
    # The Celery queue its passes run on: reward models need the training worker (torch).
    queue: ClassVar[str] = "judges"
    # Whether the kind's token prices apply (a local model costs nothing).
    priced: ClassVar[bool] = True

    def __init__(self, settings: Settings):
        self.settings = settings

    def judge(self, p: Pass) -> Reply:
        raise NotImplementedError

    def judge_many(
        self, passes: list[Pass], between: Callable[[], object] | None = None
    ) -> list[Reply | JudgeError]:
        """One reply or error per pass, in order. `between`, when given, is called now and then
        while it works (the runner's heartbeat)."""
        out: list[Reply | JudgeError] = []
        for p in passes:
            if between is not None and out:
                between()
            try:
                out.append(self.judge(p))
            except JudgeError as error:
                out.append(error)
        return out

    def close(self) -> None:
        """Release connections (called when a worker is done with the client)."""
