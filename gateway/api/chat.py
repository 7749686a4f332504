"""POST /v1/chat/completions and GET /v1/models: key, limits, chain, then the one service."""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import sync_to_async
from django.conf import settings

from gateway.api import batches as batch_api
from gateway.api.errors import ApiError, api_error
from gateway.api.http import JSON, ApiRequest, ApiResponse, json_response
from gateway.api.params import ChatCall, chat_call_parse
from gateway.api.render import completion_body, rana_headers, result_meta
from gateway.api.stream import stream_response
from gateway.selectors import chains_for_key
from gateway.services.key_cache import KeyInfo
from gateway.services.keys import gateway_key_verify, key_from_authorization
from gateway.services.limits import key_rate_check
from providers.selectors import chain_resolve
from providers.services import Caller, complete, messages_normalise, stream
from providers.types import LoadedChain

# Bodies larger than this are parsed, and their messages normalised, on a thread: a few MiB of
# messages is tens of milliseconds of Python the event loop (every other request of the
# worker) would otherwise wait for. Smaller ones are parsed inline (a thread hop costs more).
OFF_LOOP_BODY_BYTES = 1024 * 1024


async def authenticate(request: ApiRequest) -> KeyInfo:
    """The caller's gateway key, counted against its rate limit. Cookies are never looked at."""
    key = await gateway_key_verify(key=key_from_authorization(request.headers.get("authorization")))
    await key_rate_check(key)
    return key


async def chain_for(key: KeyInfo, slug: str | None) -> LoadedChain:
    loaded = await chain_resolve(slug)
    if not key.allows_chain(loaded.chain_id):
        raise ApiError(
            403,
            f"This API key may not use the chain '{loaded.slug}'.",
            type="permission_error",
            code="chain_not_allowed",
            param="model",
        )
    return loaded


async def _complete(call: ChatCall, loaded: LoadedChain, caller: Caller) -> ApiResponse:
    result = await complete(chain=loaded.slug, messages=call.messages, params=call.params, caller=caller)
    meta = result_meta(result)
    headers = [("content-type", JSON), *rana_headers(meta)]
    body = completion_body(result, int(time.time()), meta, legacy=call.legacy_functions)
    return ApiResponse(200, headers, body)


async def _stream(call: ChatCall, loaded: LoadedChain, caller: Caller) -> ApiResponse:
    completion = await stream(chain=loaded.slug, messages=call.messages, params=call.params, caller=caller)
    try:
        first = await anext(aiter(completion))
    except BaseException:
        await completion.aclose()
        raise
    return stream_response(completion, first, call)


def _caller(key: KeyInfo) -> Caller:
    """The API caller, with the key's own budgets (checked and charged by the service)."""
    return Caller(
        source="api",
        gateway_key_prefix=key.prefix,
        key_daily_budget_usd=key.daily_budget_usd,
        key_monthly_budget_usd=key.monthly_budget_usd,
    )


def _parse_off_loop(body: bytes, max_messages: int) -> ChatCall:
    """chat_call_parse and the messages' normalisation, run on a thread. An error leaves
    without this thread's frames, so the parsed body is freed here, not on the event loop."""
    call: ChatCall | None = None
    try:
        call = chat_call_parse(body, max_messages=max_messages)
        call.messages = messages_normalise(call.messages)
        return call
    except Exception as exc:
        error = exc.with_traceback(None)  # the frames below, and what they hold, go now
    call = None  # and the messages already parsed
    raise error


async def parse_call(body: bytes) -> ChatCall:
    """The request's ChatCall; past OFF_LOOP_BODY_BYTES the work is done off the event loop."""
    limit = settings.RANA_API_MAX_MESSAGES
    if len(body) <= OFF_LOOP_BODY_BYTES:
        return chat_call_parse(body, max_messages=limit)
    return await asyncio.to_thread(_parse_off_loop, body, limit)


async def chat_completions(request: ApiRequest) -> ApiResponse:
    if request.method != "POST":
        return method_not_allowed("POST")
    chain = ""
    try:
        key = await authenticate(request)
        call = await parse_call(request.body)
        loaded = await chain_for(key, call.chain)
        chain = loaded.slug
        if call.stream:
            return await _stream(call, loaded, _caller(key))
        return await _complete(call, loaded, _caller(key))
    except Exception as exc:
        return api_error(exc, chain=chain).response()


async def models(request: ApiRequest, slug: str | None = None) -> ApiResponse:
    """GET /v1/models (the chains this key may use) and GET /v1/models/{chain}."""
    if request.method != "GET":
        return method_not_allowed("GET")
    try:
        key = await authenticate(request)
        found = await sync_to_async(chains_for_key, thread_sensitive=False)(key, slug=slug)
        if slug is None:
            return json_response(200, {"object": "list", "data": found})
        if not found:
            raise ApiError(404, f"The model '{slug}' does not exist.", code="model_not_found", param="model")
        return json_response(200, found[0])
    except Exception as exc:
        return api_error(exc).response()


def method_not_allowed(allowed: str) -> ApiResponse:
    error = ApiError(405, f"Method not allowed: use {allowed}.", headers=[("allow", allowed)])
    return error.response()


def not_found(request: ApiRequest) -> ApiResponse:
    message = (
        f"Unknown URL {request.method} {request.path}: "
        "RANA serves /v1/chat/completions, /v1/models and /v1/batches."
    )
    return ApiError(404, message, code="unknown_url").response()


async def dispatch(request: ApiRequest) -> ApiResponse:
    """Route a /v1/ request by its path."""
    path = request.path.rstrip("/")
    if path == "/v1/chat/completions":
        return await chat_completions(request)
    if path == "/v1/models":
        return await models(request)
    if path.startswith("/v1/models/"):
        return await models(request, path.removeprefix("/v1/models/"))
    if path == "/v1/batches" or path.startswith("/v1/batches/"):
        return await batch_api.route(request, path.removeprefix("/v1/batches"))
    return not_found(request)
