"""The judge backends' real SDKs against a real local server (tests/llm_server.py): what they
send, what they make of each reply, and which errors are worth another try."""

import threading
import time
from email.utils import formatdate

import pytest

from annotate.kinds import get_kind
from annotate.kinds.base import KindError
from judges.clients import BACKENDS
from judges.clients.anthropic import AnthropicMessages
from judges.clients.base import JudgeError, Pass, Settings, retry_after_seconds
from judges.clients.openai_compat import OpenAICompat

from .llm_server import Answer, LLMServer

KEY = "sk-test-0123456789abcdef"
PAIRWISE = get_kind("pairwise")
CONFIG = PAIRWISE.clean_config({})
SHOWN = [
    {"id": "r1", "text": "Paris.", "model": "m1"},
    {"id": "r2", "text": "Lyon.", "model": "m2"},
]
PASS = Pass(
    kind="pairwise",
    config=CONFIG,
    messages=[
        {"role": "system", "content": "You are a careful judge."},
        {"role": "user", "content": "Which answer to 'capital of France?' is better? ..."},
    ],
    schema=PAIRWISE.judge_schema(SHOWN, CONFIG),
    prompt="capital of France?",
    shown=SHOWN,
)


def make_client(server: LLMServer, backend: str, **settings):
    url = server.openai_url if backend == "openai_compat" else server.anthropic_url
    values = {"model": "judge-1", "base_url": url, "api_key": KEY, "timeout_s": 5.0, **settings}
    return BACKENDS[backend](Settings(backend=backend, **values))


@pytest.fixture(params=["openai_compat", "anthropic"])
def backend(request):
    return request.param


@pytest.fixture
def client(llm_server, backend):
    llm_server.api_key = KEY
    client = make_client(llm_server, backend)
    yield client
    client.close()


def judge_error(client, p: Pass = PASS) -> JudgeError:
    with pytest.raises(JudgeError) as caught:
        client.judge(p)
    return caught.value


def test_backends_are_registered_by_name():
    assert BACKENDS["openai_compat"] is OpenAICompat
    assert BACKENDS["anthropic"] is AnthropicMessages


def test_json_reply_is_parsed_by_the_kind(client, llm_server):
    llm_server.script(Answer.json_verdict("B", strength=3))

    reply = client.judge(PASS)

    label = PAIRWISE.parse_judge_output(reply.text, SHOWN, CONFIG)
    assert label == {"choice": "B", "strength": 3, "rationale": "More accurate."}
    assert reply.model == "judge-1"


def test_bracketed_verdict_is_the_fallback(client, llm_server):
    llm_server.script(Answer.bracketed("B"))

    reply = client.judge(PASS)

    assert PAIRWISE.parse_judge_output(reply.text, SHOWN, CONFIG)["choice"] == "B"


def test_malformed_reply_comes_back_as_text_for_the_kind_to_refuse(client, llm_server):
    llm_server.script(Answer.malformed())

    reply = client.judge(PASS)

    assert reply.text == Answer.malformed().text
    with pytest.raises(KindError):
        PAIRWISE.parse_judge_output(reply.text, SHOWN, CONFIG)


def test_usage_tokens_come_back_as_the_server_counted_them(client, llm_server):
    replies = [client.judge(PASS) for _ in range(3)]

    usage = llm_server.usage()
    assert usage["requests"] == 3
    assert sum(r.tokens_in for r in replies) == usage["tokens_in"] > 0
    assert sum(r.tokens_out for r in replies) == usage["tokens_out"] > 0


def test_openai_reply_without_usage_costs_zero_tokens(llm_server):
    llm_server.script(Answer.json_verdict(usage=False))

    reply = make_client(llm_server, "openai_compat").judge(PASS)

    assert (reply.tokens_in, reply.tokens_out) == (0, 0)
    assert reply.text


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"<html>502 Bad Gateway</html>", "text/html"),
        (b"<html>502 Bad Gateway</html>", "application/json"),
        (b'{"object": "list", "data": []}', "application/json"),
        (b'["not", "a", "reply"]', "application/json"),
    ],
)
def test_a_200_that_is_not_a_reply_is_transient_and_says_so(client, llm_server, raw, content_type):
    """A broken gateway's page, or JSON that is not a reply: never a crash of the worker."""
    llm_server.script(Answer(raw=raw, headers={"Content-Type": content_type}))
    try:
        reply = client.judge(PASS)
    except JudgeError as error:
        assert not error.permanent and client.name in error.message
    else:  # a JSON object without the reply's fields: an empty reply, which the kind refuses
        assert raw.startswith(b"{") and reply.text == ""
        assert (reply.tokens_in, reply.tokens_out) == (0, 0)


def test_reply_names_the_model_the_server_used(client, llm_server):
    llm_server.script(Answer.json_verdict(model="judge-1-2026-01-01"))

    assert client.judge(PASS).model == "judge-1-2026-01-01"


@pytest.mark.parametrize(
    "mode, response_format",
    [
        ("json_schema", {"type": "json_schema", "json_schema": {"name": "label", "schema": None}}),
        ("json_object", {"type": "json_object"}),
        ("none", None),
    ],
)
def test_openai_request_asks_for_the_structured_output_the_judge_set(
    llm_server, mode, response_format
):
    client = make_client(llm_server, "openai_compat", structured_output=mode, temperature=0.2)

    client.judge(PASS)

    body = llm_server.requests[0].body
    if response_format and mode == "json_schema":
        response_format["json_schema"]["schema"] = PASS.schema
    assert body.get("response_format") == response_format
    assert body["messages"] == PASS.messages
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("judge-1", 0.2, 1024)


def test_anthropic_request_sends_system_messages_as_the_system_parameter(llm_server):
    make_client(llm_server, "anthropic").judge(PASS)

    request = llm_server.requests[0]
    assert request.path == "/v1/messages"
    assert request.body["system"] == "You are a careful judge."
    assert request.body["messages"] == [m for m in PASS.messages if m["role"] == "user"]
    assert request.body["max_tokens"] == 1024
    assert "response_format" not in request.body


def test_requests_carry_the_key_and_the_server_records_it_blanked(client, llm_server):
    client.judge(PASS)

    headers = llm_server.requests[0].headers
    sent = headers.get("authorization") or headers.get("x-api-key")
    assert sent == "[redacted]"
    assert KEY not in repr(llm_server.requests)


@pytest.mark.parametrize("header, value", [("retry-after", "7"), ("retry-after-ms", "1500")])
def test_rate_limit_is_transient_with_the_servers_retry_after(client, llm_server, header, value):
    llm_server.script(Answer.rate_limited(value, header=header))

    error = judge_error(client)

    assert (error.permanent, error.status) == (False, 429)
    expected = float(value) / 1000 if header == "retry-after-ms" else float(value)
    assert error.retry_after == pytest.approx(expected)


def test_rate_limit_retry_after_as_an_http_date(client, llm_server):
    llm_server.script(Answer.rate_limited(formatdate(time.time() + 30, usegmt=True)))

    error = judge_error(client)

    assert not error.permanent
    assert 25 <= error.retry_after <= 31


@pytest.mark.parametrize("status", [500, 503, 408, 409])
def test_server_errors_are_transient(client, llm_server, status):
    llm_server.script(Answer.server_error(status))

    error = judge_error(client)

    assert (error.permanent, error.status) == (False, status)
    assert str(status) in error.message


def test_anthropic_overloaded_is_transient(llm_server):
    llm_server.script(Answer.server_error(529))

    error = judge_error(make_client(llm_server, "anthropic"))

    assert (error.permanent, error.status) == (False, 529)


def test_a_hang_past_the_timeout_is_transient_within_the_timeout(llm_server, backend):
    client = make_client(llm_server, backend, timeout_s=0.5)
    llm_server.script(Answer.hang(60))

    started = time.monotonic()
    error = judge_error(client)

    assert not error.permanent
    # Far under the hang: the client gave up at its timeout (a loaded machine adds seconds).
    assert time.monotonic() - started < 15


def test_a_refused_connection_is_transient(backend):
    with LLMServer() as server:
        client = make_client(server, backend)
    # The server is gone: nothing listens on its port any more.

    assert not judge_error(client).permanent


def test_wrong_key_is_permanent_and_the_message_never_names_it(llm_server, backend):
    llm_server.api_key = KEY
    wrong = "sk-wrong-secret-abcdef123456"
    client = make_client(llm_server, backend, api_key=wrong)

    error = judge_error(client)

    assert (error.permanent, error.status) == (True, 401)
    assert "401" in error.message
    for text in (error.message, str(error), repr(error.args)):
        assert wrong not in text and KEY not in text


def test_unknown_model_is_permanent_and_names_the_servers_reason(llm_server, backend):
    llm_server.models = {"judge-1"}
    client = make_client(llm_server, backend, model="judge-9")

    error = judge_error(client)

    assert (error.permanent, error.status) == (True, 404)
    assert "judge-9" in error.message


@pytest.mark.parametrize("status", [400, 403, 422])
def test_request_errors_are_permanent(client, llm_server, status):
    llm_server.script(Answer(status=status, message="bad request"))

    error = judge_error(client)

    assert (error.permanent, error.status) == (True, status)
    assert "bad request" in error.message


def test_one_client_serves_many_threads_at_once(llm_server, backend):
    llm_server.latency = 0.5
    client = make_client(llm_server, backend)
    replies = []

    def judge():
        replies.append(client.judge(PASS))

    threads = [threading.Thread(target=judge) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(replies) == 16 == llm_server.usage()["requests"]
    # The server had several of them in hand at once (one after another: never more than 1).
    # Counted, not timed: a loaded machine slows the calls, not their overlap.
    assert llm_server.peak_in_flight >= 4


@pytest.mark.parametrize(
    "headers, seconds",
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Thu, 01 Jan 2026 00:00:10 GMT"}, 10.0),
        ({"retry-after": "Wed, 31 Dec 2025 23:59:00 GMT"}, 0.0),  # already past
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_reads_seconds_milliseconds_and_dates(headers, seconds):
    now = 1767225600.0  # 2026-01-01 00:00:00 UTC

    assert retry_after_seconds(headers, now=now) == seconds
