"""The filesystem broker (config/broker.py) with several processes at once: producers that write
while a consumer reads, processes that bind queues to a fresh exchange while another reads it."""

import multiprocessing
import os
import queue as stdlib_queue
import time
import uuid

from kombu import Connection, Exchange
from kombu.transport import filesystem

from config import broker
from config.settings import broker_transport_options

PRODUCERS, MESSAGES, SIZE = 4, 20, 1024 * 1024  # big messages: each takes a while to write
fork = multiprocessing.get_context("fork")


def _connection(folder) -> Connection:
    # As the app connects: a filesystem:// URL and the settings' options.
    options = broker_transport_options("filesystem://", folder=folder)
    return Connection("filesystem://localhost/", transport_options=options)


def _produce(folder, producer: int, start) -> None:
    start.wait()
    with _connection(folder) as conn, conn.SimpleQueue("race") as q:
        for n in range(MESSAGES):
            q.put({"id": f"{producer}-{n}", "pad": "x" * SIZE})


def test_filesystem_urls_use_the_app_transport(tmp_path):
    with _connection(tmp_path) as conn:
        assert type(conn.transport) is broker.Transport
        assert issubclass(broker.Transport, filesystem.Transport)


def test_a_consumer_racing_producers_gets_every_message_once(tmp_path):
    start = fork.Event()
    producers = [fork.Process(target=_produce, args=(tmp_path, p, start)) for p in range(PRODUCERS)]
    for p in producers:
        p.start()
    received = []
    try:
        with _connection(tmp_path) as conn, conn.SimpleQueue("race") as q:
            start.set()
            deadline = time.monotonic() + 30
            # Poll as fast as possible, so as to list the folder while files are being written.
            while len(received) < PRODUCERS * MESSAGES and time.monotonic() < deadline:
                try:
                    message = q.get_nowait()
                except stdlib_queue.Empty:
                    continue
                received.append(message.payload["id"])
                assert len(message.payload["pad"]) == SIZE
                message.ack()
    finally:
        for p in producers:
            p.join(10)
    assert [p.exitcode for p in producers] == [0] * PRODUCERS
    expected = [f"{p}-{n}" for p in range(PRODUCERS) for n in range(MESSAGES)]
    assert sorted(received) == sorted(expected)
    leftover = sorted(os.listdir(tmp_path / "queue"))
    assert leftover == [], "nothing left behind: no message, no partial file"


BINDERS, EXCHANGES = 4, 100


def _bind(folder, exchanges: list[str], binder: int, barrier) -> None:
    with _connection(folder) as conn:
        channel = conn.default_channel
        for exchange in exchanges:
            Exchange(exchange, "fanout", channel=channel).declare()
            channel.queue_declare(f"{exchange}-q{binder}")
        for exchange in exchanges:
            barrier.wait(5)  # all binders at once, on an exchange that nobody has bound yet
            channel.queue_bind(f"{exchange}-q{binder}", exchange, "")


def test_queues_bound_at_once_to_a_new_exchange_are_all_in_its_table(tmp_path):
    exchanges = [f"ex-{uuid.uuid4().hex[:8]}" for _ in range(EXCHANGES)]
    barrier = fork.Barrier(BINDERS)
    binders = [
        fork.Process(target=_bind, args=(tmp_path, exchanges, b, barrier)) for b in range(BINDERS)
    ]
    for p in binders:
        p.start()
    with _connection(tmp_path) as conn:
        channel = conn.default_channel
        # A broadcast meanwhile reads the tables while they are created: no error.
        while any(p.is_alive() for p in binders):
            for exchange in exchanges:
                channel.get_table(exchange)
        for p in binders:
            p.join(10)
            assert p.exitcode == 0
        for exchange in exchanges:
            bound = sorted(q.queue for q in channel.get_table(exchange))
            assert bound == [f"{exchange}-q{b}" for b in range(BINDERS)]
