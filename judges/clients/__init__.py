"""Judge backends: one JudgeClient subclass per module (see base.py), registered by name."""

from __future__ import annotations

from .base import JudgeClient, JudgeError, Pass, Reply, Settings

BACKENDS: dict[str, type[JudgeClient]] = {}


def register(cls: type[JudgeClient]) -> type[JudgeClient]:
    BACKENDS[cls.name] = cls
    return cls


def client_class(backend: str) -> type[JudgeClient]:
    """The backend's class; KeyError naming the known backends when there is none."""
    _load()
    try:
        return BACKENDS[backend]
    except KeyError:
        raise KeyError(
            f"unknown judge backend {backend!r} (one of {', '.join(BACKENDS)})"
        ) from None


def _load() -> None:
    # Imported on first use: the web process needs the names, not the SDKs, most of the time.
    from . import anthropic, openai_compat, reward_model  # noqa: F401


__all__ = ["BACKENDS", "JudgeClient", "JudgeError", "Pass", "Reply", "Settings", "client_class"]
