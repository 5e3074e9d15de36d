"""A real HTTP server on 127.0.0.1 that answers like OpenAI's chat completions and Anthropic's
messages, so the judge clients' SDKs are tested (and benchmarked) over a socket, unmocked.

    with LLMServer(latency=0.3, jitter=0.05) as server:   # or server.start() ... server.stop()
        server.script(Answer.rate_limited(retry_after="2"), Answer.json_verdict("B"))
        ...  # base_url: server.openai_url (".../v1") or server.anthropic_url

Each request takes the next scripted Answer, or `server.respond(request)` once the script is
spent (a good JSON verdict by default). It checks the key when `api_key` is set (401 otherwise)
and the model when `models` is set (404 otherwise), records every request (auth values blanked)
and adds up the tokens it reported, to compare with what a run accounted.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AUTH_HEADERS = ("authorization", "x-api-key")


@dataclass
class Answer:
    """What the server does with one request: reply with `text` (status 200) or fail."""

    text: str = ""
    status: int = 200
    message: str = ""  # the error's message in the provider's error body
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering, on top of the server's latency
    usage: bool = True  # False: a reply without usage (some local servers send none)
    model: str | None = None  # the model the reply names; the requested one by default
    raw: bytes | None = None  # a 200 with this body instead of a reply (a broken gateway)

    @classmethod
    def json_verdict(cls, choice: str = "A", strength: int | None = 2, **kw) -> Answer:
        label = {"choice": choice, "strength": strength, "rationale": "More accurate."}
        return cls(text=json.dumps(label), **kw)

    @classmethod
    def bracketed(cls, choice: str = "B") -> Answer:
        return cls(text=f"Response {choice} answers the question directly. [[{choice}]]")

    @classmethod
    def malformed(cls) -> Answer:
        return cls(text='{"choice": "A", "rationale": unfinished')

    @classmethod
    def rate_limited(cls, retry_after: str = "2", header: str = "retry-after") -> Answer:
        return cls(status=429, message="Rate limit reached.", headers={header: retry_after})

    @classmethod
    def server_error(cls, status: int = 500) -> Answer:
        return cls(status=status, message="The server had an error.")

    @classmethod
    def hang(cls, seconds: float = 5.0) -> Answer:
        return cls(text="too late", delay=seconds)

    @classmethod
    def unauthorized(cls) -> Answer:
        return cls(status=401, message="Invalid API key.")


@dataclass
class Request:
    path: str
    headers: dict  # lower-case names; Authorization and x-api-key values blanked
    body: dict


def default_respond(request: Request) -> Answer:
    return Answer.json_verdict()


class LLMServer:
    def __init__(
        self,
        *,
        api_key: str = "",
        models: set[str] | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        respond: Callable[[Request], Answer] = default_respond,
        seed: int = 0,
    ):
        self.api_key = api_key
        self.models = models
        self.latency = latency
        self.jitter = jitter
        self.respond = respond
        self.requests: list[Request] = []
        self.tokens_in = 0
        self.tokens_out = 0
        # Requests being answered now, and the most at once: what concurrency a client reached.
        self.in_flight = 0
        self.peak_in_flight = 0
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle.

    def start(self) -> LLMServer:
        self._stopping.clear()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.llm = self
        # A short poll: stop() (shutdown) waits up to one interval, at every test's teardown.
        serve = self._httpd.serve_forever
        self._thread = threading.Thread(target=serve, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        # Wakes the hanging handlers so they give up instead of holding their threads.
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_url(self) -> str:
        return self.url

    # Behaviour and what it saw.

    def script(self, *answers: Answer) -> None:
        """Answers for the next requests, in order; then `respond` takes over."""
        with self._lock:
            self._script.extend(answers)

    def usage(self) -> dict:
        with self._lock:
            return {
                "requests": len(self.requests),
                "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out,
            }

    def _next_answer(self, request: Request, presented_key: str, protocol) -> Answer:
        model = request.body.get("model")
        with self._lock:
            self.requests.append(request)
            if self.api_key and presented_key != self.api_key:
                return Answer(status=401, message=protocol.bad_key_message(presented_key))
            if self.models is not None and model not in self.models:
                return Answer(status=404, message=protocol.no_model_message(model))
            scripted = self._script.popleft() if self._script else None
        return scripted or self.respond(request)

    def _delay(self, answer: Answer) -> float:
        with self._lock:
            jitter = self._rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        return max(0.0, self.latency + jitter) + answer.delay

    def _count(self, tokens_in: int, tokens_out: int) -> None:
        with self._lock:
            self.tokens_in += tokens_in
            self.tokens_out += tokens_out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen backlog: a benchmark opens 64+ connections at once
    llm: LLMServer


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as the SDKs' connection pools expect; every reply carries a Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add ~40 ms to every reply on a kept-alive connection.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format, *args) -> None:
        pass

    def do_POST(self) -> None:
        llm = self.server.llm
        routes = {"/v1/chat/completions": _OpenAI, "/v1/messages": _Anthropic}
        protocol = routes.get(self.path.partition("?")[0])
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if protocol is None:
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        try:
            body = json.loads(raw)
        except ValueError:
            return self._send(400, protocol.error(400, "could not parse the JSON body"))
        headers = {k.lower(): v for k, v in self.headers.items()}
        presented = _presented_key(headers)
        for name in AUTH_HEADERS:
            if name in headers:
                headers[name] = "[redacted]"
        answer = llm._next_answer(Request(self.path, headers, body), presented, protocol)
        # Waits on the stop event: a hang ends when the server stops.
        with llm._lock:
            llm.in_flight += 1
            llm.peak_in_flight = max(llm.peak_in_flight, llm.in_flight)
        try:
            stopped = llm._stopping.wait(llm._delay(answer))
        finally:
            with llm._lock:
                llm.in_flight -= 1
        if stopped:
            self.close_connection = True
            return
        if answer.status >= 400:
            error = protocol.error(answer.status, answer.message)
            return self._send(answer.status, error, answer.headers)
        if answer.raw is not None:
            return self._send(200, None, {"Content-Type": "application/json", **answer.headers},
                              data=answer.raw)  # fmt: skip
        tokens_in = _count_tokens([body.get("system"), body.get("messages")])
        tokens_out = _count_tokens(answer.text)
        if answer.usage:
            llm._count(tokens_in, tokens_out)
        reply = protocol.reply(answer, body.get("model") or "", tokens_in, tokens_out)
        self._send(200, reply, answer.headers)

    def do_GET(self) -> None:
        self._send(404, {"error": {"message": f"no route {self.path}"}})

    def _send(
        self, status: int, payload: dict | None, headers: dict | None = None, data: bytes = b""
    ) -> None:
        data = data if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout) before the answer came.
            self.close_connection = True


def _presented_key(headers: dict) -> str:
    bearer = headers.get("authorization", "")
    return headers.get("x-api-key") or bearer.removeprefix("Bearer ").strip()


def _count_tokens(value) -> int:
    # About four characters a token, like the providers' rule of thumb; never zero.
    text = value if isinstance(value, str) else json.dumps(value)
    return max(1, len(text) // 4)


class _OpenAI:
    ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 429: "requests"}

    @staticmethod
    def reply(answer: Answer, model: str, tokens_in: int, tokens_out: int) -> dict:
        reply = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": answer.model or model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "system_fingerprint": None,
        }
        if answer.usage:
            total = tokens_in + tokens_out
            usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}
            reply["usage"] = {**usage, "total_tokens": total}
        return reply

    @classmethod
    def error(cls, status: int, message: str) -> dict:
        kind = cls.ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request")
        code = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
        return {
            "error": {"message": message, "type": kind, "param": None, "code": code.get(status)}
        }

    @staticmethod
    def bad_key_message(key: str) -> str:
        # OpenAI echoes (part of) the key it refused; this echoes all of it, to test redaction.
        return f"Incorrect API key provided: {key}. You can find your API key in your settings."

    @staticmethod
    def no_model_message(model) -> str:
        return f"The model `{model}` does not exist or you do not have access to it."


class _Anthropic:
    ERROR_TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }

    @staticmethod
    def reply(answer: Answer, model: str, tokens_in: int, tokens_out: int) -> dict:
        usage = {"input_tokens": tokens_in, "output_tokens": tokens_out} if answer.usage else None
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": answer.model or model,
            "content": [{"type": "text", "text": answer.text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage or {"input_tokens": 0, "output_tokens": 0},
        }

    @classmethod
    def error(cls, status: int, message: str) -> dict:
        kind = cls.ERROR_TYPES.get(status, "api_error")
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        return {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": request_id,
        }

    @staticmethod
    def bad_key_message(key: str) -> str:
        return f"invalid x-api-key: {key}"

    @staticmethod
    def no_model_message(model) -> str:
        return f"model: {model}"
