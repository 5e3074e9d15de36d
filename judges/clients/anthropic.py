"""Anthropic's Messages API. The kind's prompt already asks for JSON; no tool use needed."""

from __future__ import annotations

import anthropic

from . import register
from .base import (
    JudgeClient,
    JudgeError,
    Pass,
    Reply,
    Settings,
    redact,
    status_error,
    token_count,
)


@register
class AnthropicMessages(JudgeClient):
    name = "anthropic"
    title = "Anthropic (messages)"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        # One client (one connection pool) for every thread of the run; the SDK's retries are off.
        self.client = anthropic.Anthropic(
            base_url=settings.base_url or None,
            # Passed even when empty: without it the SDK reads keys and profiles from the machine.
            api_key=settings.api_key or "not-needed",
            max_retries=0,
            timeout=settings.timeout_s,
        )

    def judge(self, p: Pass) -> Reply:
        system = "\n\n".join(m["content"] for m in p.messages if m["role"] == "system")
        messages = [m for m in p.messages if m["role"] != "system"]
        body = {
            "model": self.settings.model,
            "max_tokens": self.settings.max_tokens,
            "messages": messages,
            **({"system": system} if system else {}),
        }
        try:
            # No temperature: this SDK's Messages API (2026-10-21) no longer takes one. The SDK's
            # plain POST (its client, headers, errors and timeouts) answered as parsed JSON, as
            # the OpenAI backend does (see there).
            reply = self.client.post("/v1/messages", body=body, cast_to=object)
        except ValueError:  # a 200 whose body is not JSON (a gateway's error page)
            raise JudgeError(f"{self.name}: the reply is not JSON", permanent=False) from None
        except anthropic.APIStatusError as error:
            raise status_error(
                self.name,
                error.status_code,
                error.api_message or _raw_body(error),
                error.response.headers,
                secret=self.settings.api_key,
            ) from None
        except anthropic.APIError as error:
            # A timeout or a dropped connection.
            message = redact(f"{self.name}: {error.message}", self.settings.api_key)
            raise JudgeError(message, permanent=False) from None
        return _reply(reply, self.name)

    def close(self) -> None:
        self.client.close()


def _raw_body(error: anthropic.APIStatusError) -> str:
    # A proxy's error page rather than Anthropic's {"type": "error", "error": {...}}.
    return error.body if isinstance(error.body, str) else ""


def _reply(reply, backend: str) -> Reply:
    """A message's text blocks, usage and model; JudgeError when it is not a message."""
    if not isinstance(reply, dict) or not isinstance(reply.get("content", []), list):
        raise JudgeError(f"{backend}: the reply is not a message", permanent=False)
    blocks = [b for b in reply.get("content") or [] if isinstance(b, dict)]
    text = "".join(str(b.get("text") or "") for b in blocks if b.get("type") == "text")
    usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
    return Reply(
        text=text,
        tokens_in=token_count(usage.get("input_tokens")),
        tokens_out=token_count(usage.get("output_tokens")),
        model=str(reply.get("model") or ""),
    )
