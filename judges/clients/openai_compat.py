"""OpenAI's Chat Completions API, as OpenAI, vLLM, llama.cpp, Ollama and most gateways speak it."""

from __future__ import annotations

import openai

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
        body = {
            "model": self.settings.model,
            "messages": p.messages,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            **self._response_format(p),
        }
        try:
            # The SDK's plain POST (its client, errors and timeouts) answered as parsed JSON: the
            # typed create() spent 3.3 ms of CPU a call validating and modelling, this 1.4 ms
            # (bench/README.md, "Judges"), and a run makes hundreds of calls a second.
            reply = self.client.post("/chat/completions", body=body, cast_to=object)
        except ValueError:  # a 200 whose body is not JSON (a gateway's error page)
            raise JudgeError(f"{self.name}: the reply is not JSON", permanent=False) from None
        except openai.APIStatusError as error:
            raise status_error(
                self.name,
                error.status_code,
                _server_message(error),
                error.response.headers,
                secret=self.settings.api_key,
            ) from None
        except openai.APIError as error:
            # A timeout, a dropped connection or a reply that is not JSON.
            message = redact(f"{self.name}: {error.message}", self.settings.api_key)
            raise JudgeError(message, permanent=False) from None
        return _reply(reply, self.name)

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


def _reply(reply, backend: str) -> Reply:
    """A chat completion's text, usage and model; JudgeError when it is not one."""
    if not isinstance(reply, dict) or not isinstance(reply.get("choices", []), list):
        raise JudgeError(f"{backend}: the reply is not a chat completion", permanent=False)
    choices = reply.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
    return Reply(
        text=text if isinstance(text, str) else "",
        tokens_in=token_count(usage.get("prompt_tokens")),
        tokens_out=token_count(usage.get("completion_tokens")),
        model=str(reply.get("model") or ""),
    )
