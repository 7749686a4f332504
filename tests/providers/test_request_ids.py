"""Request ids: UUIDv7, unique, and cheap on the serving thread (few calls into the OS)."""

from __future__ import annotations

import os
import uuid

from providers.models import ledger


def test_ids_are_time_ordered_version_7_and_unique():
    ids = [ledger.new_request_id() for _ in range(5000)]
    assert len(set(ids)) == 5000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert [i.int >> 80 for i in ids] == sorted(i.int >> 80 for i in ids)  # by millisecond


def test_the_os_is_asked_for_random_bytes_once_per_few_hundred_ids(monkeypatch):
    """os.urandom releases the GIL: once per request it handed the interpreter to other threads."""
    calls = []
    real = os.urandom
    monkeypatch.setattr(ledger.os, "urandom", lambda n: calls.append(n) or real(n))
    for _ in range(1000):
        ledger.new_request_id()
    assert 1 <= len(calls) <= 1000 * 10 // ledger._POOL_BYTES + 1


def test_a_forked_child_does_not_repeat_its_parents_ids():
    ledger.new_request_id()  # the pool holds bytes the child must not reuse
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        os.write(write, ledger.new_request_id().bytes)
        os._exit(0)
    os.close(write)
    child = uuid.UUID(bytes=os.read(read, 16))
    os.waitpid(pid, 0)
    mine = ledger.new_request_id()
    assert (child.int & ((1 << 62) - 1)) != (mine.int & ((1 << 62) - 1))
