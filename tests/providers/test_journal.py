"""The ledger journal: rows on disk before they are acknowledged, written in order, segments
removed once committed (but kept while a request that started in them is in flight), and a
dead process's journal replayed exactly once: what it had not written is written, what it had
not announced is announced, and calls and requests it left in flight are closed as cancelled."""

from __future__ import annotations

import os
import time
from decimal import Decimal

import pytest
from django.utils import timezone

from providers.models import Attempt, Completion, CompletionBody, JournalCursor
from providers.models.ledger import new_request_id
from providers.services import journal as journal_module
from providers.services.journal import Journal, JournalReader, dead_journals
from providers.services.journal_codec import call_request_id, decode, decode_call, encode, encode_call
from providers.services.ledger_writer import BufferedRecorder
from providers.services.recorder import PendingRow
from providers.signals import ledger_rows_written

pytestmark = pytest.mark.django_db(transaction=True)


def attempt(completion_id, step: int, **fields) -> PendingRow:
    values = dict(
        completion_id=completion_id,
        started_at=timezone.now(),
        source="api",
        step_position=step,
        provider_name="p",
        provider_kind="openai",
        model="m",
        outcome="success",
        latency_ms=3.5,
        cost_usd=Decimal("0.000123"),
    )
    return PendingRow(Attempt, values | fields)


def completion(request_id, **fields) -> PendingRow:
    values = dict(id=request_id, created_at=timezone.now(), source="api", outcome="success", attempt_count=1)
    return PendingRow(Completion, values | fields)


def body(request_id, **fields) -> PendingRow:
    values = dict(
        completion_id=request_id,
        created_at=timezone.now(),
        messages='[{"role":"user","content":"héllo"}]',
        answer="bonjour",
        answer_tool_calls=None,
    )
    return PendingRow(CompletionBody, values | fields)


def kill(journal: Journal) -> None:
    """What the kernel does when the process dies: its descriptors (and its lock) go."""
    journal.close()
    os.close(journal._lock_fd)


def test_a_row_survives_the_round_trip_with_its_types():
    request_id = new_request_id()
    row = attempt(request_id, 0)
    kind, back, submitted = decode(encode(row).rstrip(b"\n"))
    assert kind == "a" and back.fields == row.fields and submitted > 0
    call = encode_call(attempt(request_id, 0), completion(request_id).fields)
    assert call_request_id(call) == str(request_id)
    row = body(request_id)
    kind, kept, _ = decode(encode(row).rstrip(b"\n"))
    assert kind == "b" and kept.model is CompletionBody and kept.fields == row.fields
    back, first = decode_call(call.rstrip(b"\n"))
    assert back.fields == attempt(request_id, 0).fields | {"started_at": back.fields["started_at"]}
    assert first.fields["id"] == request_id


def test_lines_are_read_in_order_across_segments_and_a_torn_tail_waits(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 200)
    journal = Journal(tmp_path)
    for n in range(100):
        journal.append(b'["x", %d]\n' % n)
    reader = JournalReader(journal.folder, journal)
    got = [line for _, _, line in reader.read(1000)]
    assert got == [b'["x", %d]' % n for n in range(100)] and journal.segment > 3
    reader.commit()
    assert len(list(journal.folder.glob("seg-*"))) == 1  # only the segment being written is left
    os.write(journal._fd, b'["torn"')  # half a line: not returned until it is whole
    assert reader.read(10) == []
    os.write(journal._fd, b"]\n")
    assert [line for _, _, line in reader.read(10)] == [b'["torn"]']


def test_the_writer_keeps_the_segment_of_a_request_in_flight(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 400)
    recorder = BufferedRecorder(journal_folder=tmp_path, interval_s=0.01)
    try:
        in_flight = new_request_id()
        recorder.call_started(attempt(in_flight, 0, outcome="cancelled"), completion(in_flight).fields)
        for _ in range(20):  # other requests, finished: several segments' worth
            done = new_request_id()
            recorder.submit(attempt(done, 0))
            recorder.submit(completion(done))
        assert recorder.flush(5)
        folder = recorder._journal.folder
        assert min(journal_module.segment_number(p) for p in folder.glob("seg-*")) == 1
        recorder.submit(completion(in_flight))  # it ends: its segment may go
        assert recorder.flush(5)
        recorder.submit(attempt(new_request_id(), 0))
        assert recorder.flush(5)
        assert min(journal_module.segment_number(p) for p in folder.glob("seg-*")) > 1
        assert not Completion.objects.filter(outcome="cancelled").exists()  # provisional: never written
    finally:
        recorder.close()


def test_a_dead_journal_is_replayed_once_with_its_calls_and_requests_in_flight_closed(tmp_path):
    folder = tmp_path / "db"
    dead = Journal(folder)
    finished, in_flight = new_request_id(), new_request_id()
    died = completion(in_flight, outcome="cancelled", error_message="died").fields
    lines = [
        encode(attempt(finished, 0)),
        encode(completion(finished)),
        encode(body(finished)),
        encode_call(attempt(in_flight, 0, outcome="cancelled"), died),
        encode(attempt(in_flight, 0, outcome="server_error", cost_usd=Decimal("0.5"))),
        encode_call(attempt(in_flight, 1, outcome="cancelled", error_message="died mid-call"), None),
    ]
    for line in lines:
        dead.append(line)
    kill(dead)
    heard = []

    def listener(sender, rows, **kwargs):
        heard.extend(rows)

    ledger_rows_written.connect(listener)
    recorder = BufferedRecorder(journal_folder=folder, interval_s=0.01)
    try:
        recorder.start()
        recorder._journal_here()
        assert recorder.flush(5)
        for _ in range(100):
            if not dead.folder.exists():
                break
            import time

            time.sleep(0.05)
    finally:
        recorder.close()
        ledger_rows_written.disconnect(listener)
    assert not dead.folder.exists()
    assert Completion.objects.get(id=finished).outcome == "success"
    died = Completion.objects.get(id=in_flight)
    assert (died.outcome, died.error_message, died.attempt_count) == ("cancelled", "died", 2)
    assert died.cost_usd == Decimal("0.500123")
    outcomes = sorted(Attempt.objects.filter(completion_id=in_flight).values_list("step_position", "outcome"))
    assert outcomes == [(0, "server_error"), (1, "cancelled")]
    assert Attempt.objects.count() == 3  # each once
    kept = CompletionBody.objects.get(pk=finished)
    assert kept.answer == "bonjour" and "héllo" in kept.messages
    assert {type(r).__name__ for r in heard} == {"Attempt", "Completion"} and len(heard) == 5  # no body


def test_replay_skips_what_the_dead_writer_committed_and_announces_what_it_had_not(tmp_path):
    folder = tmp_path / "db"
    dead = Journal(folder)
    first, second = new_request_id(), new_request_id()
    ends = []
    for row in (completion(first), completion(second)):
        dead.append(encode(row))
        ends.append(os.path.getsize(next(dead.folder.glob("seg-*"))))
    kill(dead)
    # The dead writer had committed both rows, and announced only the first.
    Completion.objects.create(id=first, created_at=timezone.now(), source="api", outcome="success")
    Completion.objects.create(id=second, created_at=timezone.now(), source="api", outcome="success")
    JournalCursor.objects.create(
        journal=dead.folder.name,
        committed_segment=1,
        committed_offset=ends[1],
        announced_segment=1,
        announced_offset=ends[0],
    )
    Completion.objects.filter(id=first).update(outcome="failed")  # a later change replay must not undo
    heard = []

    def listener(sender, rows, **kwargs):
        heard.extend(r.pk for r in rows)

    ledger_rows_written.connect(listener)
    try:
        from providers.services.journal_replay import replay_journal

        [(found, fd)] = list(dead_journals(folder, None))
        written = replay_journal(found, lambda rows, folder: pytest.fail("nothing left to write"), 100)
        os.close(fd)
    finally:
        ledger_rows_written.disconnect(listener)
    assert written == 0 and heard == [second]
    assert Completion.objects.get(id=first).outcome == "failed"
    assert not JournalCursor.objects.exists()


def test_a_live_journal_is_not_taken_for_a_dead_one(tmp_path):
    live = Journal(tmp_path)
    assert list(dead_journals(tmp_path, None)) == []
    kill(live)
    [(found, fd)] = list(dead_journals(tmp_path, None))
    os.close(fd)
    assert found == live.folder


def test_the_live_writer_writes_bodies_beside_their_completions(tmp_path):
    recorder = BufferedRecorder(journal_folder=tmp_path, interval_s=0.01)
    try:
        ids = [new_request_id() for _ in range(3)]
        for request_id in ids:
            recorder.submit(completion(request_id))
            recorder.submit(body(request_id, answer=f"answer {request_id}"))
        recorder.submit(body(ids[0], answer="written twice: the last one wins"))
        assert recorder.flush(5)
    finally:
        recorder.close()
    kept = dict(CompletionBody.objects.values_list("completion_id", "answer"))
    assert kept == {ids[0]: "written twice: the last one wins"} | {i: f"answer {i}" for i in ids[1:]}


def test_a_body_bigger_than_a_read_and_a_segment_is_written_whole(tmp_path):
    recorder = BufferedRecorder(journal_folder=tmp_path, interval_s=0.01)
    request_id = new_request_id()
    answer = "é" * (3 * 1024 * 1024)  # 6 MiB of UTF-8 on its line: past a segment and a read
    try:
        recorder.submit(completion(request_id))
        recorder.submit(body(request_id, answer=answer))
        recorder.submit(attempt(request_id, 0))  # and the rows after it are not lost
        assert recorder.flush(10)
    finally:
        recorder.close()
    assert CompletionBody.objects.get(pk=request_id).answer == answer
    assert Attempt.objects.filter(completion_id=request_id).count() == 1


def test_a_dead_journal_with_a_big_body_is_replayed_whole(tmp_path):
    folder = tmp_path / "db"
    dead = Journal(folder)
    request_id = new_request_id()
    answer = "é" * (3 * 1024 * 1024)
    for line in (encode(completion(request_id)), encode(body(request_id, answer=answer))):
        dead.append(line)
    dead.append(encode(attempt(request_id, 0)))
    kill(dead)
    recorder = BufferedRecorder(journal_folder=folder, interval_s=0.01)
    try:
        recorder.start()
        recorder._journal_here()
        assert recorder.flush(10)
        for _ in range(200):
            if not dead.folder.exists():
                break
            time.sleep(0.05)
    finally:
        recorder.close()
    assert not dead.folder.exists()
    assert CompletionBody.objects.get(pk=request_id).answer == answer
    assert Attempt.objects.filter(completion_id=request_id).count() == 1
