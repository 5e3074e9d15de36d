"""OpenAI's Chat Completions API, as OpenAI, vLLM, llama.cpp, Ollama and most gateways speak it."""

from __future__ import annotations

import openai

from . import register
from .base import JudgeClient, JudgeError, Pass, Reply, Settings, redact, status_error


@register
class OpenAICompat(JudgeClient):
    name = "openai_compat"
    title = "OpenAI-compatible (chat completions)"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        # One client (one connection pool) for every thread of the run; the SDK's retries are off.
        self.client = openai.OpenAI(
            base_url=settings.base_url or None,
            # Local servers take no key, but the SDK refuses to start without one.
            api_key=settings.api_key or "not-needed",
            max_retries=0,
            timeout=settings.timeout_s,
        )

    def judge(self, p: Pass) -> Reply:
        try:
            response = self.client.chat.completions.create(
                model=self.settings.model,
                messages=p.messages,
                temperature=self.settings.temperature,
                max_tokens=self.settings.max_tokens,
                **self._response_format(p),
            )
        except openai.APIStatusError as error:
            raise status_error(
                self.name,
                error.status_code,
                _server_message(error),
                error.response.headers,
                secret=self.settings.api_key,
            ) from None
        except openai.APIError as error:
            # A timeout, a dropped connection or a reply that is not a chat completion.
            message = redact(f"{self.name}: {error.message}", self.settings.api_key)
            raise JudgeError(message, permanent=False) from None
        choice = response.choices[0] if response.choices else None
        usage = response.usage
        return Reply(
            text=(choice.message.content if choice else None) or "",
            tokens_in=usage.prompt_tokens if usage else 0,
            tokens_out=usage.completion_tokens if usage else 0,
            model=response.model or "",
        )

    def _response_format(self, p: Pass) -> dict:
        mode = self.settings.structured_output
        if mode == "json_schema":
            schema = {"name": "label", "schema": p.schema}
            return {"response_format": {"type": "json_schema", "json_schema": schema}}
        if mode == "json_object":
            return {"response_format": {"type": "json_object"}}
        if mode == "none":
            return {}
        raise JudgeError(f"{self.name}: unknown structured_output {mode!r}", permanent=True)

    def close(self) -> None:
        self.client.close()


def _server_message(error: openai.APIStatusError) -> str:
    # The SDK keeps the body's "error" object (or the raw text when it was not JSON).
    body = error.body
    if isinstance(body, dict):
        return str(body.get("message") or "")
    return str(body or "")
