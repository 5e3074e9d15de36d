"""Process-wide tuning, in one place; bench/README.md has the numbers behind each."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator


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
