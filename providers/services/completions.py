"""complete() and stream(): the one path every prompt takes, from any spoke.

Resolve the chain, validate the input, put its steps in the order of the chain's strategy
(services.routing), hold the request's estimated cost on its budgets (or refuse it), look in
the response cache, hand the engine a plain plan, record every attempt as it ends and the
completion when it is done, and settle the budgets with the real cost: in a finally block, so
a request that fails, is cancelled or raises releases its hold too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async

from providers.adapters import get_adapter
from providers.engine.fallback import EngineDeps, run
from providers.engine.plan import ChainPlan, StepPlan
from providers.engine.results import AllProvidersFailed, AttemptRecord, Cancelled, EngineResult
from providers.engine.routing import Route
from providers.engine.types import ChatParams, Choice, Message, ProviderError, ToolCall, Usage, request_needs
from providers.http_client import shared_client
from providers.models import Completion, CompletionBody, CompletionOutcome, FallbackChain
from providers.models.ledger import new_request_id
from providers.services import budget, budget_refusals, observe, response_cache
from providers.services.bodies import body_fields
from providers.services.breaker import get_breaker
from providers.services.breaker_policy import BreakerPolicy
from providers.services.chains import LoadedChain, NoUsableStep, achain_cached, chain_load
from providers.services.faults import FaultSpec, adapter_for_with_faults, fault_specs_bind
from providers.services.image_fetch import images_resolve
from providers.services.inputs import InvalidRequest, messages_normalise, params_normalise
from providers.services.ledger import Caller, RequestLedger, params_recorded
from providers.services.recorder import PendingRow, get_recorder
from providers.services.routing import route_request
from providers.signals import completion_recorded, fallback_happened
from rana_site.cache_io import cache_run

log = logging.getLogger("rana.service")
_JITTER = random.Random()  # backoff jitter for every request (a new Random per request costs a seeding)
os.register_at_fork(after_in_child=_JITTER.seed)  # worker processes must not jitter in step

ChainRef = str | FallbackChain | None
DEFAULT_CALLER = Caller()


@dataclass(slots=True)
class CompletionResult:
    request_id: uuid.UUID
    text: str
    finish_reason: str | None
    model: str
    provider_name: str
    answered_step: int | None
    fallback_used: bool
    attempts: list[AttemptRecord]
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal = Decimal(0)
    unpriced: bool = False
    cache_hit: bool = False
    latency_ms: float = 0.0
    chain_slug: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Any = None  # of choice 0, when asked for
    more_choices: tuple[Choice, ...] = ()  # choices 1.. when n > 1
    refusal: str | None = None  # the model declined (a 200 answer with message.refusal)
    route: Route | None = None  # the order the steps were to be tried in, and why


async def chain_resolve(chain: ChainRef) -> LoadedChain:
    slug = chain.slug if isinstance(chain, FallbackChain) else chain
    return await achain_cached(slug) or await sync_to_async(chain_load, thread_sensitive=False)(slug)


@dataclass(slots=True)
class Prepared:
    """A request ready for the engine, or already answered (budget block or cache hit)."""

    loaded: LoadedChain
    plan: ChainPlan  # the chain's plan with its steps in this request's order
    route: Route
    messages: tuple[Message, ...]
    params: ChatParams
    ledger: RequestLedger
    budgets: tuple[budget.BudgetScope, ...] = ()
    hold: budget.Hold | None = None  # what it holds on its budgets until settle()
    cache_key: str | None = None
    cached: response_cache.CachedAnswer | None = None


async def prepare(
    *,
    chain: ChainRef,
    messages: Sequence,
    params: ChatParams | Mapping[str, Any] | None,
    caller: Caller,
    stream: bool,
    rng: random.Random | None = None,
) -> Prepared:
    """Validate, resolve the chain, order its steps (`rng`: the weighted strategy's draw), hold
    the estimated cost on the budgets, look in the cache. Raises InvalidRequest, ChainNotFound,
    NoUsableStep or BudgetExceeded (the last counted as a budget_blocked completion: see
    budget_refusals). Whoever gets the Prepared must settle() it."""
    msgs = messages_normalise(messages)
    chat_params = params_normalise(params)
    if stream and chat_params.n is not None and chat_params.n > 1:
        raise InvalidRequest("n", "more than one choice is not supported on a stream")
    loaded = await chain_resolve(chain)
    if not loaded.plan.steps:
        raise NoUsableStep(loaded.slug)
    plan, route = await route_request(loaded.plan, msgs, chat_params, rng=rng or _JITTER)
    ledger = RequestLedger(new_request_id(), loaded.chain_id, loaded.slug, caller, stream)
    ledger.route = route.as_dict()
    ledger.params = params_recorded(chat_params)
    needs = request_needs(msgs, chat_params)
    ledger.needs = ",".join(sorted(needs))
    scopes = budget.budget_scopes(
        chain_id=loaded.chain_id,
        chain_daily=loaded.daily_budget_usd,
        chain_monthly=loaded.monthly_budget_usd,
        key_prefix=caller.gateway_key_prefix,
        key_daily=caller.key_daily_budget_usd,
        key_monthly=caller.key_monthly_budget_usd,
    )
    prepared = Prepared(loaded, plan, route, msgs, chat_params, ledger, scopes)
    if scopes:
        await _reserve(prepared)
    try:
        if loaded.cache_ttl_s and not needs:
            # Cached answers are text: a request with tools, images or a response format is always asked.
            prepared.cache_key = response_cache.cache_key(
                loaded.chain_id, loaded.updated_at, msgs, chat_params
            )
            prepared.cached = await cache_run(response_cache.cache_get, prepared.cache_key)
    except BaseException:
        await settle(prepared, Decimal(0))
        raise
    return prepared


async def _reserve(prepared: Prepared) -> None:
    """Hold the request's estimated cost on its budgets (one atomic check-and-reserve), or
    raise BudgetExceeded. Cancelled meanwhile, the hold taken by the worker thread is released
    as soon as the thread is done."""
    plan, ledger = prepared.plan, prepared.ledger
    reserve = sync_to_async(budget.budget_reserve, thread_sensitive=False)
    task = asyncio.ensure_future(
        reserve(
            scopes=prepared.budgets,
            token=ledger.request_id.hex,
            estimate_usd=budget.budget_estimate(plan, prepared.messages, prepared.params),
            ttl_s=int(plan.deadline_s) + budget.HOLD_GRACE_S,
        )
    )
    try:
        prepared.hold = await asyncio.shield(task)
    except budget.BudgetExceeded as exc:
        exc.request_id = ledger.request_id
        await _refused(ledger, exc)
        raise
    except asyncio.CancelledError:
        task.add_done_callback(_release_late)
        raise


def _release_late(task: asyncio.Future) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    asyncio.get_running_loop().run_in_executor(None, budget.budget_settle, task.result(), Decimal(0))


async def _refused(ledger: RequestLedger, exc: budget.BudgetExceeded) -> None:
    """Count the refusal; its sampled row is written now or later (budget_refusals)."""
    caller = ledger.caller
    key = (exc.scope, ledger.chain_id, caller.source, caller.gateway_key_prefix, caller.user_id)
    values = ledger.completion_values(
        CompletionOutcome.BUDGET_BLOCKED, error_class="budget_blocked", error_message=str(exc)
    )
    observe.request_ended(values, [])
    row = budget_refusals.refusals.refused(key, values)
    if row is not None:
        completion = PendingRow(Completion, row)
        get_recorder().submit(completion)
        await _announce(completion, ledger)


async def settle(prepared: Prepared, cost: Decimal) -> None:
    """Release the request's budget hold and charge what it cost (failed attempts included).
    Once per request; later calls do nothing."""
    hold, prepared.hold = prepared.hold, None
    if hold is None or hold.settled:
        return
    try:
        await cache_run(budget.budget_settle, hold, cost)
    except Exception:  # the answer stands; the hold lapses by itself
        log.exception("could not settle request %s on its budgets", prepared.ledger.request_id)


def rng_of(overrides: Mapping[str, Any] | None) -> random.Random | None:
    return (overrides or {}).get("rng")


def engine_deps(
    ledger: RequestLedger, overrides: Mapping[str, Any] | None = None, *, breaker: BreakerPolicy | None = None
) -> EngineDeps:
    """The engine's hooks for one request; `breaker`: its chain's breaker policy (None: the settings)."""

    def on_fallback(from_step: StepPlan, to_step: StepPlan, error: ProviderError) -> None:
        fallback_happened.send_robust(
            None,
            request_id=ledger.request_id,
            chain_slug=ledger.chain_slug,
            from_step=from_step,
            to_step=to_step,
            error=error,
        )

    gate = get_breaker().gate(breaker)  # this request's probe slots

    def on_attempt(record: AttemptRecord) -> None:
        try:
            ledger.attempt(record)
        finally:  # the breaker hears of it even when the ledger raised (a probe slot is freed)
            gate.record(record)
            observe.attempt_ended(record, ledger.chain_slug)

    deps = {
        "adapter_for": get_adapter,
        "on_attempt": on_attempt,
        "on_attempt_start": ledger.attempt_started,
        "on_fallback": on_fallback,
        "is_circuit_open": gate.is_open,
        "circuit_retry_in": gate.retry_in,
        "release_probe": gate.release_probe,
        "rng": _JITTER,
        "resolve_images": images_resolve,
    }
    deps.update(overrides or {})
    if "client" not in deps:
        deps["client"] = shared_client()
    return EngineDeps(**deps)


def with_faults(
    prepared: Prepared, faults: Sequence[FaultSpec], overrides: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """The overrides with an adapter_for that injects `faults` into the chain's steps."""
    if not faults:
        return overrides
    base = (overrides or {}).get("adapter_for", get_adapter)
    bound = fault_specs_bind(faults, prepared.plan)
    return {**(overrides or {}), "adapter_for": adapter_for_with_faults(bound, base)}


async def _finish(
    prepared: Prepared,
    outcome: CompletionOutcome,
    response_model: str | None = None,
    answer: str = "",
    tool_calls: Sequence[ToolCall] = (),
    **fields,
) -> None:
    """Record the completion row, and its body where the chain keeps bodies."""
    ledger, loaded = prepared.ledger, prepared.loaded
    row = ledger.finish(outcome, **fields)
    body = body_fields(
        mode=loaded.body_logging,
        chars=loaded.body_log_chars,
        plan=prepared.plan,
        request_id=ledger.request_id,
        created_at=ledger.created_at,
        messages=prepared.messages,
        answer=answer,
        tool_calls=tool_calls,
    )
    if body is not None:
        get_recorder().submit(PendingRow(CompletionBody, body))
    observe.request_ended(row.fields, ledger.attempts, response_model=response_model, body=body)
    await _announce(row, ledger)


async def _announce(row: PendingRow, ledger: RequestLedger) -> None:
    if completion_recorded.has_listeners():
        for receiver, result in await completion_recorded.asend_robust(
            None, completion=row.build(), attempts=ledger.attempts
        ):
            if isinstance(result, Exception):
                log.error("completion_recorded receiver %r failed: %s", receiver, result)


def cache_hit_result(prepared: Prepared) -> CompletionResult:
    hit = prepared.cached
    return CompletionResult(
        request_id=prepared.ledger.request_id,
        text=hit.text,
        finish_reason=hit.finish_reason,
        model=hit.model,
        provider_name=hit.provider_name,
        answered_step=hit.answered_step,
        fallback_used=False,
        attempts=[],
        usage=hit.usage or Usage(),
        cache_hit=True,
        latency_ms=prepared.ledger.elapsed_ms(),
        chain_slug=prepared.loaded.slug,
        route=prepared.route,
    )


async def record_cache_hit(prepared: Prepared) -> CompletionResult:
    result = cache_hit_result(prepared)
    await _finish(
        prepared,
        CompletionOutcome.CACHE_HIT,
        answer=result.text,
        cost_usd=Decimal(0),
        answered_provider_id=prepared.cached.provider_id,
        answered_model=prepared.cached.model,
        answered_step=prepared.cached.answered_step,
    )
    await settle(prepared, Decimal(0))
    return result


async def record_success(prepared: Prepared, result: EngineResult) -> CompletionResult:
    ledger, loaded = prepared.ledger, prepared.loaded
    response = result.response
    await _finish(
        prepared,
        CompletionOutcome.SUCCESS,
        response_model=response.model or None,
        answer=response.text or (f"(refused) {response.refusal}" if response.refusal else ""),
        tool_calls=response.tool_calls,
    )
    answered = next(a for a in reversed(result.attempts) if a.ok)
    if prepared.cache_key:
        await cache_run(
            response_cache.cache_put,
            prepared.cache_key,
            loaded.cache_ttl_s,
            result.response,
            provider_id=answered.provider_id,
            provider_name=answered.provider_name,
            answered_step=result.answered_step,
        )
    await settle(prepared, result.cost_usd)
    return CompletionResult(
        request_id=ledger.request_id,
        text=result.response.text,
        finish_reason=result.response.finish_reason,
        model=answered.model,
        provider_name=answered.provider_name,
        answered_step=result.answered_step,
        fallback_used=result.fallback_used,
        attempts=list(result.attempts),
        usage=result.usage,
        cost_usd=result.cost_usd,
        unpriced=result.unpriced,
        latency_ms=ledger.elapsed_ms(),
        chain_slug=loaded.slug,
        tool_calls=result.response.tool_calls,
        logprobs=result.response.logprobs,
        more_choices=result.response.more_choices,
        refusal=result.response.refusal,
        route=prepared.route,
    )


async def record_failure(prepared: Prepared, exc: AllProvidersFailed | Cancelled) -> None:
    exc.request_id = prepared.ledger.request_id
    exc.route = prepared.route
    if isinstance(exc, Cancelled):
        outcome = CompletionOutcome.CANCELLED
    elif exc.failure_class == "stream_interrupted":
        outcome = CompletionOutcome.STREAM_INTERRUPTED
    else:
        outcome = CompletionOutcome.FAILED
    await _finish(
        prepared,
        outcome,
        error_class=str(exc.failure_class),
        error_message=str(exc)[:4000],
        retry_after_s=getattr(exc, "retry_after_s", None),
    )
    await settle(prepared, exc.cost_usd)


async def complete(
    *,
    chain: ChainRef = None,
    messages: Sequence,
    params: ChatParams | Mapping[str, Any] | None = None,
    caller: Caller = DEFAULT_CALLER,
    faults: Sequence[FaultSpec] = (),
    overrides: Mapping[str, Any] | None = None,
) -> CompletionResult:
    """One prompt through a chain. Raises InvalidRequest, ChainNotFound, NoUsableStep,
    BudgetExceeded, StepOutOfRange, AllProvidersFailed or Cancelled; each error carries
    `request_id` (and the engine's errors `route`) once recorded. `faults` are injected into
    this request's steps (the playground's fault injection); `overrides` replace engine
    dependencies (adapter_for, clock, rng, ...; the rng draws the weighted strategy's first
    step too)."""
    prepared = await prepare(
        chain=chain, messages=messages, params=params, caller=caller, stream=False, rng=rng_of(overrides)
    )
    try:
        if prepared.cached:
            return await record_cache_hit(prepared)
        deps = engine_deps(
            prepared.ledger, with_faults(prepared, faults, overrides), breaker=prepared.loaded.breaker
        )
        try:
            result = await run(prepared.plan, prepared.messages, prepared.params, deps)
        except (AllProvidersFailed, Cancelled) as exc:
            await record_failure(prepared, exc)
            raise
        except asyncio.CancelledError:
            await record_failure(prepared, Cancelled("the caller went away", prepared.ledger.attempts))
            raise
        return await record_success(prepared, result)
    finally:  # settled already unless something above raised before it could
        await settle(prepared, prepared.ledger.cost_so_far)


complete_sync = async_to_sync(complete)
