"""Half-open probes: exactly one goes, and every way its request ends gives the slot back (with
the circuits in this process and in Redis)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from types import SimpleNamespace

import pytest

from providers.engine.fallback import run, run_stream
from providers.engine.results import AllProvidersFailed
from providers.engine.types import FailureClass, ImagePart, Message, ProviderError, StreamEvent, TextPart
from providers.services import completions
from providers.services.breaker import CircuitBreaker
from providers.services.breaker_shared import PROBE_RECHECK_S
from tests.providers import breaker_fixtures
from tests.providers.breaker_fixtures import (
    POLICY,
    STEP,
    gate_deps,
    open_circuit,
    poll,
    probe_is_free,
    shared_circuits,
)
from tests.providers.engine_fakes import MESSAGES, PARAMS, chain, fail, ok, step

breaker, circuits, clock, prefix = (
    breaker_fixtures.breaker,
    breaker_fixtures.circuits,
    breaker_fixtures.clock,
    breaker_fixtures.prefix,
)  # fixtures

GOOD = step(1, "good")  # provider id 2


class ProbeAdapter:
    """The probed step (provider "p") answers after a real pause, so requests overlap; or plays
    `probe` (an exception, or stream chunks). Any other step answers "good" at once."""

    kind = "fake"
    capabilities = frozenset({"images"})
    inline_images = True

    def __init__(self, probe=None, pause_s: float = 0.02) -> None:
        self.probe, self.pause_s = probe, pause_s
        self.calls: Counter[str] = Counter()

    async def complete(self, request, client):
        self.calls[request.provider.name] += 1
        if request.provider.name != "p":
            return ok("good")
        await asyncio.sleep(self.pause_s)
        if isinstance(self.probe, BaseException):
            raise self.probe
        return ok("probe")

    async def stream(self, request, client):
        self.calls[request.provider.name] += 1
        for text in ("pro", "be"):
            await asyncio.sleep(self.pause_s)
            yield StreamEvent(text=text)
        yield StreamEvent(finish_reason="stop")


@pytest.fixture
def half_open(breaker, clock) -> CircuitBreaker:
    open_circuit(breaker)
    clock.now += POLICY.cooldown_s
    return breaker


async def test_exactly_one_probe_goes_among_ten_concurrent_requests(half_open):
    adapter = ProbeAdapter()
    plan = chain(STEP, GOOD)
    results = await asyncio.gather(
        *(run(plan, MESSAGES, PARAMS, gate_deps(half_open, adapter)) for _ in range(10))
    )
    assert adapter.calls["p"] == 1
    assert sorted(r.response.text for r in results) == ["good"] * 9 + ["probe"]
    skipped = [r.attempts[0].outcome for r in results if r.response.text == "good"]
    assert skipped == ["circuit_open"] * 9
    assert not half_open.is_open(STEP)  # the probe's success closed it


@pytest.mark.redis
async def test_exactly_one_probe_goes_among_requests_of_two_processes(clock, prefix):
    """Two processes' breakers (each its own mirror) on one Redis: one probe between them."""
    first, second = shared_circuits(clock, prefix), shared_circuits(clock, prefix)
    try:
        breakers = [CircuitBreaker(POLICY, clock=clock, circuits=c) for c in (first, second)]
        open_circuit(breakers[0])
        clock.now += POLICY.cooldown_s
        adapter = ProbeAdapter()
        plan = chain(STEP, GOOD)
        runs = [run(plan, MESSAGES, PARAMS, gate_deps(b, adapter)) for b in breakers for _ in range(10)]
        await asyncio.gather(*runs)
        assert adapter.calls["p"] == 1
    finally:
        first.clear()
        first.close()
        second.close()


async def test_a_probes_success_closes_the_circuit(half_open):
    result = await run(chain(STEP, GOOD), MESSAGES, PARAMS, gate_deps(half_open, ProbeAdapter()))
    assert result.response.text == "probe"
    half_open.flush()
    assert half_open.states()[0]["state"] == "closed" and not half_open.is_open(STEP)


async def test_a_probes_failure_reopens_the_circuit_and_frees_the_slot(half_open, clock):
    adapter = ProbeAdapter(fail("server_error", status=503))
    result = await run(chain(STEP, GOOD), MESSAGES, PARAMS, gate_deps(half_open, adapter))
    assert result.response.text == "good"
    (row,) = half_open.states()
    assert (row["state"], row["probe_in_flight"], row["cooldown_s"]) == ("open", False, 60.0)
    clock.now += 60
    assert probe_is_free(half_open)


async def test_a_cancelled_probe_gives_its_slot_back(half_open):
    adapter = ProbeAdapter(pause_s=30)
    task = asyncio.create_task(run(chain(STEP, GOOD), MESSAGES, PARAMS, gate_deps(half_open, adapter)))
    while not adapter.calls["p"]:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe_is_free(half_open)


async def test_a_cancelled_probe_stream_gives_its_slot_back(half_open):
    stream = run_stream(chain(STEP, GOOD), MESSAGES, PARAMS, gate_deps(half_open, ProbeAdapter()))
    first = await anext(stream)
    assert first.text == "pro"
    await stream.aclose()  # after the first token: recorded as cancelled
    assert [a.outcome for a in stream.attempts] == ["cancelled"]
    assert probe_is_free(half_open)


async def test_a_probe_is_freed_when_the_ledger_hook_raises_and_the_step_fell_back(half_open):
    def ledger_raises(attempt) -> None:
        raise RuntimeError("the ledger broke")

    adapter = ProbeAdapter(fail("server_error", status=503))
    deps = gate_deps(half_open, adapter, on_attempt=ledger_raises)  # the breaker never hears
    result = await run(chain(STEP, GOOD), MESSAGES, PARAMS, deps)
    assert result.response.text == "good"
    assert probe_is_free(half_open)  # the engine's release_probe


async def test_a_probe_that_answered_is_closed_even_when_the_ledger_raises(half_open, monkeypatch):
    """engine_deps tells the breaker in a finally, whatever the ledger does."""
    monkeypatch.setattr(completions, "get_breaker", lambda: half_open)

    def ledger_raises(attempt) -> None:
        raise RuntimeError("the ledger broke")

    ledger = SimpleNamespace(attempt=ledger_raises, attempt_started=lambda *args: None)
    adapter = ProbeAdapter()
    deps = completions.engine_deps(ledger, {"adapter_for": lambda kind: adapter}, breaker=POLICY)
    result = await run(chain(STEP, GOOD), MESSAGES, PARAMS, deps)
    assert result.response.text == "probe"
    half_open.flush()
    assert half_open.states()[0]["state"] == "closed"


async def test_a_probe_is_freed_when_fetching_its_images_fails(half_open):
    async def fetch_fails(messages):
        raise ProviderError(FailureClass.INVALID_REQUEST, "image 1 could not be fetched: HTTP 404")

    image = (Message("user", "look", parts=(TextPart("look"), ImagePart("https://img.example/cat.png"))),)
    deps = gate_deps(half_open, ProbeAdapter(), resolve_images=fetch_fails)
    with pytest.raises(AllProvidersFailed) as info:
        await run(chain(STEP, GOOD), image, PARAMS, deps)
    assert info.value.failure_class == "invalid_request"
    assert probe_is_free(half_open)


async def test_a_probe_is_freed_when_the_adapter_raises_something_unexpected(half_open):
    result = await run(chain(STEP, GOOD), MESSAGES, PARAMS, gate_deps(half_open, ProbeAdapter(KeyError("x"))))
    assert [a.outcome for a in result.attempts] == ["bad_response", "success"]
    assert half_open.states()[0]["probe_in_flight"] is False  # counted as a failed probe


async def test_a_probe_is_freed_when_rana_raises_before_the_call(half_open):
    def adapter_for(kind):
        raise RuntimeError("no adapter")

    deps = gate_deps(half_open, ProbeAdapter(), adapter_for=adapter_for)
    with pytest.raises(RuntimeError, match="no adapter"):
        await run(chain(STEP, GOOD), MESSAGES, PARAMS, deps)
    assert probe_is_free(half_open)


async def test_a_probe_is_freed_when_the_deadline_passes_right_after_taking_it(half_open):
    """The probe's lease is taken (a Redis round trip on a busy machine, say) and by then the
    request's deadline has passed: the walk stops before any call."""
    adapter = ProbeAdapter()
    deps = gate_deps(half_open, adapter)
    take_probe = deps.is_circuit_open

    def slow_is_open(step) -> bool:
        answer = take_probe(step)
        deps.clock.advance(60)
        return answer

    deps.is_circuit_open = slow_is_open
    with pytest.raises(AllProvidersFailed) as info:
        await run(chain(STEP, GOOD, deadline_s=60), MESSAGES, PARAMS, deps)
    assert info.value.deadline_exceeded and adapter.calls["p"] == 0
    assert probe_is_free(half_open)


async def test_a_probe_lease_expires_by_itself_when_nothing_gives_it_back(breaker, clock, circuits):
    short = dataclasses.replace(POLICY, probe_lease_s=0.3)
    open_circuit(breaker)
    clock.now += POLICY.cooldown_s
    assert not breaker.gate(short).is_open(STEP)  # taken, and never ended
    assert not probe_is_free(breaker)

    def later_free() -> bool:  # Redis' TTL runs in real time; other processes ask again every so often
        clock.now += PROBE_RECHECK_S
        return probe_is_free(breaker)

    assert poll(later_free)
