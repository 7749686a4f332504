"""The lean ASGI path for /v1/: no Django request, middleware or signals on the hot path.

Django's ASGI handler runs each middleware's request and response hooks, the
request_started / request_finished receivers and the response's close through
``sync_to_async``: a dozen thread hops per request, all queued behind one thread. The API
needs none of it (no cookies, no sessions, no templates; it authenticates by key alone), so
``ApiRouter`` sends /v1/ straight to the gateway handlers and everything else to Django.
Host names are still checked against ALLOWED_HOSTS.

A client that disconnects cancels the request: the upstream call is closed and the service
records the completion as cancelled. A body must arrive whole within RANA_API_BODY_TIMEOUT_S
(408 and the connection closed, so a client trickling its body holds nothing for long) and
RANA_API_MAX_BODY_BYTES (413); a worker serves at most RANA_MAX_CONCURRENCY requests at once
and answers any beyond them 503 with Retry-After at once, rather than queueing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from gateway.api.chat import dispatch
from gateway.api.errors import ApiError, body_timeout, body_too_large, overloaded
from gateway.api.http import ApiRequest, ApiResponse, BodyTimeout, BodyTooLarge, read_body

log = logging.getLogger("rana.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_host_ok: dict[str, bool] = {}


def _allowed_host(host: str) -> bool:
    known = _host_ok.get(host)
    if known is None:
        domain, _port = split_domain_port(host)
        allowed = list(settings.ALLOWED_HOSTS)
        if not allowed and settings.DEBUG:  # what Django itself allows in DEBUG
            allowed = ["localhost", "127.0.0.1", "[::1]"]
        known = bool(domain) and validate_host(domain, allowed)
        if len(_host_ok) < 1000:
            _host_ok[host] = known
    return known


async def _read_body(receive: Receive, headers: dict[str, str]) -> bytes | ApiResponse | None:
    """The whole body; a 413 or 408 answer past the limits; None when the client left."""
    try:
        return await read_body(
            receive,
            headers.get("content-length", ""),
            max_bytes=settings.RANA_API_MAX_BODY_BYTES,
            timeout_s=settings.RANA_API_BODY_TIMEOUT_S,
        )
    except BodyTooLarge:
        return body_too_large(settings.RANA_API_MAX_BODY_BYTES).response()
    except BodyTimeout:
        return body_timeout(settings.RANA_API_BODY_TIMEOUT_S).response()


async def _send(response: ApiResponse, send: Send) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    headers.append((b"x-content-type-options", b"nosniff"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if response.stream is None:
        await send({"type": "http.response.body", "body": response.body})
        return
    async for chunk in response.stream:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


class _DisconnectWatch:
    """Cancels the request's task when the client goes away while the request is served."""

    def __init__(self, receive: Receive, task: asyncio.Task) -> None:
        self.receive, self.task = receive, task
        self.gone = False
        self.armed = True

    async def watch(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                if self.armed:
                    self.task.cancel()
                return


class InFlight:
    """The /v1/ requests this worker is serving (their body read): past RANA_MAX_CONCURRENCY, a
    request is answered 503 at once instead of queueing behind the others."""

    count = 0


async def serve_api(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one /v1/ request."""
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    if not _allowed_host(headers.get("host", "")):
        await _send(ApiError(400, "Invalid Host header.", code="invalid_host").response(), send)
        return
    body = await _read_body(receive, headers)
    if body is None:
        return
    if isinstance(body, ApiResponse):
        await _send(body, send)
        return
    limit = settings.RANA_MAX_CONCURRENCY
    if InFlight.count >= limit:
        await _send(overloaded(limit).response(), send)
        return
    InFlight.count += 1
    try:
        await _serve(scope, receive, send, headers, body)
    finally:
        InFlight.count -= 1


async def _serve(scope: Scope, receive: Receive, send: Send, headers: dict[str, str], body: bytes) -> None:
    task = asyncio.current_task()
    assert task is not None
    disconnect = _DisconnectWatch(receive, task)
    watcher = asyncio.get_running_loop().create_task(disconnect.watch())
    response: ApiResponse | None = None
    try:
        query = scope.get("query_string", b"").decode("latin-1")
        response = await dispatch(ApiRequest(scope["method"], scope["path"], headers, body, query))
        await _send(response, send)
    except asyncio.CancelledError:
        if not disconnect.gone:
            raise  # not the client leaving: a real cancellation (server shutdown)
        task.uncancel()
    finally:
        disconnect.armed = False
        watcher.cancel()
        if response is not None:
            with contextlib.suppress(Exception):
                await response.aclose()


# rana_site.asgi freezes what start-up loaded out of the garbage collector's reach; serving
# the first requests loads and caches more (adapters, the HTTP client, chain plans, Django's
# lazy caches) that every full collection would walk again. Once warm, freeze that too (a
# cheap list splice, no collection).
FREEZE_AFTER_REQUESTS = 500


class ApiRouter:
    """/v1/ to the gateway, everything else to `app` (Django); handles ASGI lifespan."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._until_freeze = FREEZE_AFTER_REQUESTS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            if self._until_freeze:
                self._until_freeze -= 1
                if not self._until_freeze:
                    gc.freeze()
            await serve_api(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        from gateway.api.loop_lag import loop_lag_start, loop_lag_stop
        from providers.services import service_shutdown

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                loop_lag_start()  # only when RANA_LOOP_LAG_DIR is set (benchmarks)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await loop_lag_stop()
                await service_shutdown()  # close upstream connections, write the ledger's rows
                await send({"type": "lifespan.shutdown.complete"})
                return
