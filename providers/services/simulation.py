"""Synthetic traffic through the real fallback engine: ledger rows that obey the engine's rules.

``ledger_simulate`` runs each SimRequest through the engine (``run``, or ``run_stream`` for a
stream) on a FakeClock started at its arrival, the simulated adapter standing in for every
provider kind. Per attempt the stand-in only picks the adapter's options from the model's
Behaviour and the incidents under way: latency, usage, and whether and how the call fails (the
adapter's ``failure_kinds`` at ``failure_rate`` 1; ``hang`` for a timeout, which waits the read
timeout; ``interrupt_after`` for a stream cut). Simulated providers keep their own options.
The rest is the engine's: retries, backoff jitter (seeded) and Retry-After waits on the fake
clock, fallback order, stop classes, deadline and max_attempts, costs (engine/cost.py, today's
prices) and, unless ``breaker=False``, a real CircuitBreaker on the simulated time (its skips are
circuit_open attempts). Injected faults (``SimRequest.faults``) go through services.faults.

Rows are the values RequestLedger writes (services/ledger.py): a completion (totals from its
attempts) and its attempts, dicts in COMPLETION_FIELDS / ATTEMPT_FIELDS order. Cache hits and
budget blocks (``SimRequest.settled``, decided by the caller as ``prepare()`` would) have no
attempts. Call it from synchronous code (the ORM loads chains between batches); the engine
runs on its own event loop in a worker thread, so a loop running in the caller's is no bother.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import islice
from typing import Any

from providers.adapters.simulated import SimulatedAdapter
from providers.engine.clock import FakeClock
from providers.engine.fallback import EngineDeps, run, run_stream
from providers.engine.plan import ChainPlan
from providers.engine.results import AttemptRecord, Cancelled, EngineError, EngineResult
from providers.engine.types import ChatParams, ChatRequest, ChatResponse, Message, ProviderConfig, Timeouts
from providers.models import FallbackChain
from providers.services.breaker import CircuitBreaker
from providers.services.breaker_local import LocalCircuits
from providers.services.breaker_policy import breaker_policy
from providers.services.faults import FaultSpec, adapter_for_with_faults, fault_specs_bind
from providers.services.ledger import attempt_fields, completion_totals
from providers.services.plans import chain_plan_build

ATTEMPT_FIELDS = (
    "completion_id", "started_at", "chain_id", "source", "step_position", "provider_id",
    "provider_name", "provider_kind", "model", "retry_index", "outcome", "http_status",
    "retry_after_s", "latency_ms", "ttft_ms", "input_tokens", "output_tokens", "cached_tokens",
    "reasoning_tokens", "cost_usd", "unpriced", "error_message", "injected", "needs",
)  # fmt: skip
COMPLETION_FIELDS = (
    "id", "created_at", "finished_at", "chain_id", "chain_slug", "source", "gateway_key_prefix",
    "stream", "outcome", "error_class", "error_message", "answered_provider_id", "answered_model",
    "answered_step", "fallback_used", "attempt_count", "latency_ms", "ttft_ms", "input_tokens",
    "output_tokens", "cached_tokens", "reasoning_tokens", "cost_usd", "unpriced", "injected",
    "retry_after_s", "needs",
)  # fmt: skip
SimRows = tuple[dict[str, Any], list[dict[str, Any]]]

MESSAGES = (Message("user", "a synthetic request"),)
PARAMS = ChatParams()
FAILURES = (
    ("rate_limited", 0.45), ("server_error", 0.25), ("timeout", 0.12), ("connection_error", 0.06),
    ("bad_response", 0.05), ("context_length", 0.03), ("content_filter", 0.02),
)  # fmt: skip
_FAILURE_MS = {"server_error": 600.0, "connection_error": 600.0}  # median; others 140 ms


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How a (not simulated) provider's model answers: medians and its failure mix."""

    latency_ms: float = 900.0  # a whole answer of 260 output tokens
    ttft_ms: float = 350.0  # to the first streamed token
    failure_rate: float = 0.05  # share of calls that fail, as one of `failures` (weights)
    failures: tuple[tuple[str, float], ...] = FAILURES
    stream_cut_rate: float = 0.005  # share of streams cut after their first token


@dataclass(frozen=True, slots=True)
class Incident:
    """From start to end, calls to this provider also fail at failure_rate, as `failure`."""

    provider_name: str
    start: datetime
    end: datetime
    failure_rate: float
    failure: str


@dataclass(frozen=True, slots=True)
class SimRequest:
    at: datetime  # arrival
    chain: str  # slug
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    source: str = "api"
    gateway_key_prefix: str = ""
    stream: bool = False
    input_tokens: int = 900  # what every answering provider reports
    output_tokens: int = 260
    cached_tokens: int = 0
    faults: tuple[FaultSpec, ...] = ()  # injected (the playground's), by step position
    cancel: bool = False  # the caller closes the stream after its first token
    settled: str = ""  # "cache_hit" or "budget_blocked": answered before the engine runs


def simulation_chains(*, slugs: Sequence[str] | None = None) -> dict[str, int]:
    """Slug -> how many steps its plan has, for the chains (all, or these) with at least one."""
    rows = FallbackChain.objects.order_by("name")
    if slugs:
        rows = rows.filter(slug__in=slugs)
    plans = (_plan(chain) for chain in rows.prefetch_related("steps__provider"))
    return {plan.slug: len(plan.steps) for plan in plans if plan.steps}


def _plan(chain: FallbackChain) -> ChainPlan:
    """The engine's plan, without keys; simulated providers keep their options."""
    steps = sorted(chain.steps.all(), key=lambda s: (s.position, s.id))
    plan = chain_plan_build(chain=chain, steps=steps, with_keys=False)
    options = {s.provider_id: dict(s.provider.options or {}) for s in steps if s.provider.kind == "simulated"}
    own = lambda s: replace(s, provider=replace(s.provider, options=options[s.provider.id]))  # noqa: E731
    return replace(plan, steps=tuple(own(s) if s.provider.id in options else s for s in plan.steps))


class _Upstream:
    """Every provider kind, played by the simulated adapter with options chosen per attempt."""

    kind = "simulated"

    def __init__(self, behaviours: Mapping[str, Behaviour], incidents: Sequence[Incident], rng: Any):
        self.behaviours, self.incidents, self.rng, self.default = behaviours, incidents, rng, Behaviour()
        self.clock = FakeClock()
        self.request = SimRequest(self.clock.now(), "")
        self.sim = SimulatedAdapter(rng=rng, sleep=lambda seconds: self.clock.sleep(seconds))

    def __call__(self, kind: str) -> _Upstream:  # EngineDeps.adapter_for
        return self

    async def complete(self, request: ChatRequest, client: Any = None) -> ChatResponse:
        return await self.sim.complete(self._dress(request, stream=False), client)

    def stream(self, request: ChatRequest, client: Any = None) -> Any:
        return self.sim.stream(self._dress(request, stream=True), client)

    def _dress(self, request: ChatRequest, *, stream: bool) -> ChatRequest:
        """The request with this attempt's options (built directly: replace() is slow)."""
        sim, t, p = self.request, request.timeouts, request.provider
        if stream:  # the engine gives up on a stream without a first token at first_token_s
            t = Timeouts(t.connect_s, min(t.read_s, t.first_token_s), t.first_token_s)
        options = {"input_tokens": sim.input_tokens, "output_tokens": sim.output_tokens,
                   "cached_tokens": sim.cached_tokens}  # fmt: skip
        if p.kind == "simulated":
            options = {**p.options, **options}
        else:
            options.update(self._draw(request.model, p.name, t.read_s, stream))
        provider = ProviderConfig(p.id, p.name, p.kind, p.base_url, p.api_key, options)
        return ChatRequest(provider, request.model, request.messages, request.params, t)

    def _draw(self, model: str, provider_name: str, limit_s: float, stream: bool) -> dict[str, Any]:
        """This attempt's adapter options: a failure, or an answer's latency."""
        rng, b = self.rng, self.behaviours.get(model, self.default)
        failure = self._failure(b, provider_name)
        if failure == "timeout":
            return {"hang": True}
        if failure is not None:
            median = b.latency_ms if failure == "bad_response" else _FAILURE_MS.get(failure, 140.0)
            return {
                "failure_rate": 1,
                "failure_kinds": [failure],
                "latency_ms": median * rng.lognormvariate(0, 0.6),
                "retry_after_s": rng.randint(1, 20),
            }
        ttft = b.ttft_ms * rng.lognormvariate(0, 0.35)
        body = max(0.0, b.latency_ms - b.ttft_ms) * self.request.output_tokens / 260
        latency = ttft + body * rng.lognormvariate(0, 0.3)
        if (ttft if stream else latency) > limit_s * 1000:
            return {"hang": True}  # slower than the read (or first-token) timeout
        options: dict[str, Any] = {"latency_ms": latency, "ttft_ms": ttft, "chunks": 2}
        if stream and rng.random() < b.stream_cut_rate:
            options["interrupt_after"] = 1
        return options

    def _failure(self, b: Behaviour, provider_name: str) -> str | None:
        rng, now = self.rng, self.clock.now()
        for incident in self.incidents:
            ongoing = incident.provider_name == provider_name and incident.start <= now < incident.end
            if ongoing and rng.random() < incident.failure_rate:
                return incident.failure
        if rng.random() >= b.failure_rate:
            return None
        return rng.choices([name for name, _ in b.failures], [w for _, w in b.failures])[0]


class _Simulation:
    def __init__(self, upstream: _Upstream, rng: random.Random, breaker: bool) -> None:
        self.upstream, self.rng = upstream, rng
        self.plans: dict[str, ChainPlan] = {}
        self.breaker = None
        if breaker:
            self.breaker = CircuitBreaker(
                breaker_policy(),
                clock=lambda: upstream.clock.now().timestamp(),
                circuits=LocalCircuits(),  # the simulation's own, never the site's
            )

    def load(self, slugs: Iterable[str]) -> None:
        """Plans for the chains not loaded yet (before the loop runs: the ORM is sync)."""
        missing = set(slugs) - self.plans.keys()
        for chain in FallbackChain.objects.filter(slug__in=missing).prefetch_related("steps__provider"):
            self.plans[chain.slug] = _plan(chain)
        if unknown := missing - self.plans.keys():
            raise ValueError(f"no chain {', '.join(sorted(unknown))}")

    async def batch(self, requests: list[SimRequest]) -> list[SimRows]:
        return [await self.request(r) for r in requests]

    async def request(self, req: SimRequest) -> SimRows:
        plan = self.plans[req.chain]
        clock = self.upstream.clock = FakeClock(req.at)
        self.upstream.request = req
        if req.settled:
            clock.advance(0.004)
            return _completion_row(req, plan, clock, [], None), []
        adapter_for: Any = self.upstream
        if req.faults:
            adapter_for = adapter_for_with_faults(fault_specs_bind(req.faults, plan), self.upstream)
        deps = EngineDeps(adapter_for=adapter_for, clock=clock, rng=self.rng)
        if self.breaker is not None:
            deps.on_attempt, deps.is_circuit_open = self.breaker.record, self.breaker.is_open
            deps.circuit_retry_in = self.breaker.retry_in
            deps.release_probe = self.breaker.release_probe
        error: EngineError | None = None
        try:
            result = await (_stream(plan, deps, req) if req.stream else run(plan, MESSAGES, PARAMS, deps))
            attempts = result.attempts
        except EngineError as exc:
            error, attempts = exc, exc.attempts
        rows = [_attempt_row(req, plan, a) for a in attempts]
        return _completion_row(req, plan, clock, attempts, error), rows


async def _stream(plan: ChainPlan, deps: EngineDeps, req: SimRequest) -> EngineResult:
    stream = run_stream(plan, MESSAGES, PARAMS, deps)
    async for event in stream:  # relayed nowhere
        if req.cancel and event.text:
            await stream.aclose()  # the engine records the attempt as cancelled
            raise Cancelled("the caller went away", stream.attempts)
    assert stream.result is not None  # set once iteration ended cleanly
    return stream.result


def _attempt_row(req: SimRequest, plan: ChainPlan, a: AttemptRecord) -> dict[str, Any]:
    return attempt_fields(a, completion_id=req.id, chain_id=plan.chain_id, source=req.source)


def _ending(req: SimRequest, plan: ChainPlan, error: EngineError | None) -> dict[str, Any]:
    """Outcome and error fields, as record_success / record_failure / prepare() write them."""
    if req.settled == "cache_hit":
        first = plan.steps[0]  # the cached answer's
        return {"outcome": "cache_hit", "answered_provider_id": first.provider.id,
                "answered_model": first.model, "answered_step": 0}  # fmt: skip
    if req.settled:
        blocked = "budget_blocked"
        return {"outcome": blocked, "error_class": blocked, "error_message": "chain budget reached"}
    if error is None:
        return {"outcome": "success"}
    outcome = "cancelled" if isinstance(error, Cancelled) else "failed"
    if error.failure_class == "stream_interrupted":
        outcome = "stream_interrupted"
    return {"outcome": outcome, "error_class": str(error.failure_class), "error_message": str(error)[:4000],
            "retry_after_s": getattr(error, "retry_after_s", None)}  # fmt: skip


def _completion_row(
    req: SimRequest, plan: ChainPlan, clock: FakeClock, attempts: list[AttemptRecord], error: Any
) -> dict[str, Any]:
    """As RequestLedger.finish writes it: totals from the attempts."""
    ended = clock.now()
    row = {
        "id": req.id, "created_at": req.at, "finished_at": ended, "chain_id": plan.chain_id,
        "chain_slug": plan.slug, "source": req.source, "gateway_key_prefix": req.gateway_key_prefix,
        "stream": req.stream, "outcome": "", "error_class": "", "error_message": "",
        "latency_ms": round((ended - req.at).total_seconds() * 1000, 3), "retry_after_s": None,
        "needs": "", **completion_totals(attempts),
    }  # fmt: skip
    row.update(_ending(req, plan, error))
    return {name: row[name] for name in COMPLETION_FIELDS}


def ledger_simulate(
    *,
    requests: Iterable[SimRequest],
    behaviours: Mapping[str, Behaviour] | None = None,
    incidents: Sequence[Incident] = (),
    seed: int = 0,
    breaker: bool = True,
    batch: int = 500,
) -> Iterator[SimRows]:
    """(completion, attempts) rows for each request, in order, from the real engine.

    `behaviours` by model name (Behaviour() for any other); requests should come in arrival
    order, as the breaker sees time pass. The same seed and requests give the same rows.
    """
    rng = random.Random(seed)
    simulation = _Simulation(_Upstream(behaviours or {}, incidents, rng), rng, breaker)
    loop = asyncio.new_event_loop()
    engine_log = logging.getLogger("rana.engine")
    level = engine_log.level
    engine_log.setLevel(max(level, logging.WARNING))  # context-window skips are info
    pool = ThreadPoolExecutor(1, thread_name_prefix="rana-simulation")  # the caller may run a loop
    try:
        it = iter(requests)
        while chunk := list(islice(it, batch)):
            simulation.load(r.chain for r in chunk)
            yield from pool.submit(loop.run_until_complete, simulation.batch(chunk)).result()
    finally:
        pool.shutdown()
        loop.close()
        engine_log.setLevel(level)
