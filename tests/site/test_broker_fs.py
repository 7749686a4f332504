"""The broker folders (rana_site/broker_fs.py) through kombu itself: a message is delivered once
and its file deleted when acknowledged; one taken and not acknowledged goes back to the queue
when its consumer closes, and when its process dies (SIGKILL), at another consumer's next poll."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kombu import Connection

from rana_site import broker_fs
from tests.celery_worker import ROOT


@pytest.fixture
def queue() -> str:
    """A queue name per test: kombu remembers the bindings it declared per process, not per folder."""
    return f"jobs-{uuid.uuid4().hex[:8]}"


def _connection(folder: Path) -> Connection:
    options = broker_fs.transport_options(folder, polling_interval_s=0.01)
    return Connection("filesystem://", transport="rana_site.broker_fs:Transport", transport_options=options)


def _files(folder: Path) -> list[str]:
    return sorted(p.parent.name + "/" + p.name for p in folder.rglob("*.msg"))


def test_a_message_is_delivered_once_and_gone_once_acknowledged(tmp_path, queue):
    with _connection(tmp_path) as connection:
        jobs = connection.SimpleQueue(queue)
        jobs.put({"n": 1})
        message = jobs.get(timeout=5)
        assert message.payload == {"n": 1}
        held = _files(tmp_path)
        assert len(held) == 1 and not held[0].startswith("queue/")  # held by this consumer, not queued
        message.ack()
        assert _files(tmp_path) == []
        assert jobs.qsize() == 0


def test_a_message_taken_and_not_acknowledged_goes_back_when_its_consumer_closes(tmp_path, queue):
    with _connection(tmp_path) as connection:
        jobs = connection.SimpleQueue(queue)
        jobs.put({"n": 2})
        assert jobs.get(timeout=5).payload == {"n": 2}
    with _connection(tmp_path) as connection:
        message = connection.SimpleQueue(queue).get(timeout=5)
        assert message.payload == {"n": 2}
        message.ack()
    assert _files(tmp_path) == []


def test_a_message_taken_by_a_process_that_dies_is_delivered_again(tmp_path, queue):
    with _connection(tmp_path) as connection:
        connection.SimpleQueue(queue).put({"n": 3})
    taker = (
        "import os, signal, sys\n"
        "from tests.site.test_broker_fs import _connection\n"
        "from pathlib import Path\n"
        "jobs = _connection(Path(sys.argv[1])).SimpleQueue(sys.argv[2])\n"
        "assert jobs.get(timeout=5).payload == {'n': 3}\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    died = subprocess.run([sys.executable, "-c", taker, str(tmp_path), queue], cwd=ROOT, capture_output=True)
    assert died.returncode == -9, died.stderr
    assert len(_files(tmp_path)) == 1  # still held in the dead process's folder
    with _connection(tmp_path) as connection:
        message = connection.SimpleQueue(queue).get(timeout=5)
        assert message.payload == {"n": 3}
        message.ack()
    assert _files(tmp_path) == []
    assert [p.name for p in (tmp_path / "unacked").iterdir()] == []
