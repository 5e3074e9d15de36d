"""Process-wide tuning, in one place.

Domain code asks for these by name instead of reaching for the garbage collector, the C
allocator or thread-local state itself. Each one is here because a measurement said so; the
numbers, and how to reproduce them, are in bench/README.md ("Runtime tuning").
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TypeVar

T = TypeVar("T")

_per_thread = threading.local()


def per_thread(cls: type[T]) -> T:
    """One instance of `cls` per thread, built on first use and kept: for objects that are
    costly to build and hold no request's state (the API's answer shapers)."""
    instance = _per_thread.__dict__.get(cls)
    if instance is None:
        instance = _per_thread.__dict__[cls] = cls()
    return instance


class Every:
    """Says yes at most once per `interval` in this process (a race between threads costs one
    extra yes). A `now` before the last yes (a caller's own clock, tests) always says yes."""

    def __init__(self, interval: timedelta):
        self.interval = interval
        self.last: datetime | None = None

    def due(self, now: datetime) -> bool:
        if self.last is not None and self.last <= now < self.last + self.interval:
            return False
        self.last = now
        return True


@functools.cache
def _glibc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl)
        return None


def release_memory() -> None:
    """Return freed heap pages to the OS (glibc's malloc_trim): a no-op elsewhere."""
    if libc := _glibc():
        libc.malloc_trim(0)


def arrow_allocator() -> None:
    """jemalloc for Arrow: its default, mimalloc, kept an export's freed batches resident.

    Called by an export, not at start-up: importing pyarrow there would cost every process.
    ARROW_DEFAULT_MEMORY_POOL, when set, still decides."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    import pyarrow as pa

    with contextlib.suppress(NotImplementedError):  # a pyarrow built without jemalloc
        if pa.default_memory_pool().backend_name != "jemalloc":
            pa.set_memory_pool(pa.jemalloc_memory_pool())


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic GC off meanwhile: a batch's many short-lived rows make no cycles, but each
    collection walks them all."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
