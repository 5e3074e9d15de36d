"""Calls run in threads released at the same moment, for the concurrency tests on PostgreSQL."""

import threading
from collections.abc import Callable

from django.db import connections


def at_once(calls: list[Callable], timeout: float = 60) -> list:
    """Run each call in its own thread, all started together (a barrier); their results, in
    the order they finished. Each thread closes its database connections when done. Fails the
    test on any thread's exception or on a thread still running after `timeout` seconds."""
    start = threading.Barrier(len(calls))
    results, failures = [], []

    def run(call: Callable) -> None:
        try:
            start.wait()
            results.append(call())
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    assert not failures, failures
    return results
