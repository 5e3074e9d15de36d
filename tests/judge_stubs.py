"""Judge backends for tests that plan runs without calling anything: the real clients'
modules are not imported, and every backend name maps to a client that never runs."""

import pytest

from judges import clients
from judges.clients.base import JudgeClient


class _Stub(JudgeClient):
    title = "Test stub"

    def judge(self, p):
        raise AssertionError("a page or API test made a judge call")


@pytest.fixture
def stub_backends(monkeypatch):
    backends = {
        name: type(f"Stub_{name}", (_Stub,), {"name": name})
        for name in ("openai_compat", "anthropic", "jury")
    }
    backends["reward_model"] = type(
        "Stub_reward_model",
        (_Stub,),
        {"name": "reward_model", "queue": "training", "priced": False},
    )
    monkeypatch.setattr(clients, "_load", lambda: None)
    monkeypatch.setattr(clients, "BACKENDS", backends)
    return backends
