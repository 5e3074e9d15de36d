"""Anthropic's Messages API. The kind's prompt already asks for JSON; no tool use needed."""

from __future__ import annotations

import anthropic

from . import register
from .base import JudgeClient, JudgeError, Pass, Reply, Settings, redact, status_error


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
        try:
            # No temperature: this SDK's Messages API (2026-10-21) no longer takes one.
            response = self.client.messages.create(
                model=self.settings.model,
                max_tokens=self.settings.max_tokens,
                messages=messages,
                **({"system": system} if system else {}),
            )
        except anthropic.APIStatusError as error:
            raise status_error(
                self.name,
                error.status_code,
                error.api_message or _raw_body(error),
                error.response.headers,
                secret=self.settings.api_key,
            ) from None
        except anthropic.APIError as error:
            # A timeout, a dropped connection or a reply that is not a message.
            message = redact(f"{self.name}: {error.message}", self.settings.api_key)
            raise JudgeError(message, permanent=False) from None
        text = "".join(block.text for block in response.content if block.type == "text")
        usage = response.usage
        return Reply(
            text=text,
            tokens_in=usage.input_tokens if usage else 0,
            tokens_out=usage.output_tokens if usage else 0,
            model=response.model or "",
        )

    def close(self) -> None:
        self.client.close()


def _raw_body(error: anthropic.APIStatusError) -> str:
    # A proxy's error page rather than Anthropic's {"type": "error", "error": {...}}.
    return error.body if isinstance(error.body, str) else ""
