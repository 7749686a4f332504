"""The one shared upstream HTTP client per event loop, with a connect-time address guard.

Adapters see an ``httpx.AsyncClient``; underneath, requests travel over aiohttp's connection
pool (measured on a 2-core machine: about 5x the throughput of httpx's own pool at 20
requests in flight). ``UpstreamClient`` keeps httpx's API but
takes a short path through it: RANA never uses httpx's auth flows, redirects, cookies, event
hooks or base URL, and skipping them halves what one upstream call costs on top of aiohttp.

The guard lives in the resolver the connector uses: every host is resolved there, each
address is checked (no private, loopback, link-local or metadata address unless the host is
allowlisted) and the connection is made to the very addresses that were checked, so DNS
rebinding cannot slip past the check made when the base URL was saved; an IP-literal host
(never resolved) is checked before the request. Redirects are never followed, proxy
settings from the environment are ignored, and nothing retries here (aiohttp's one retry of
a stale keep-alive connection is switched off): the engine owns the one retry loop.

A client built with ``max_body_bytes`` reads at most that much of any response, decoded
(gzip and deflate are inflated here, by bounded steps, so a small compressed body cannot
expand past the cap either): a larger whole body is refused from its Content-Length or after
the bytes that passed the cap, never read into memory whole, and a stream is cut once its
bytes add up past the cap. Both raise ResponseTooLarge, an httpx.DecodingError, which the
adapters read as a bad_response.
"""

from __future__ import annotations

import asyncio
import ipaddress
import weakref
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult

from providers.aiohttp_internals import no_stale_connection_retry, session_abandon
from providers.url_safety import IMAGE_ALLOWLIST, UPSTREAM_ALLOWLIST, UnsafeUpstreamURL, check_address

USE_CLIENT_DEFAULT = httpx.USE_CLIENT_DEFAULT

_BUFFERED = "rana.buffered"  # request extension: the caller wants the whole body (send(stream=False))
_DEFAULT_HEADERS = {"accept": "*/*", "accept-encoding": "gzip, deflate", "user-agent": "RANA"}
_URLS: dict[str, httpx.URL] = {}
_ENCODED_HEADERS = (b"content-encoding", b"content-length")


class ResponseTooLarge(httpx.DecodingError):
    """An upstream response past the client's cap (RANA_UPSTREAM_MAX_BYTES)."""

    kind = "response too large"

    def __init__(self, cap: int) -> None:
        super().__init__(
            f"the upstream's response is larger than the {cap}-byte cap (RANA_UPSTREAM_MAX_BYTES)"
        )
        self.cap = cap


# aiohttp exception -> httpx exception, most specific first (the adapters classify httpx's).
_ERROR_MAP: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.InvalidURL, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.ClientError, httpx.ReadError),
)


@contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except UnsafeUpstreamURL as exc:
        raise httpx.ConnectError(f"refused by RANA's upstream guard: {exc}") from exc
    except aiohttp.ClientError as exc:
        for source, target in _ERROR_MAP:
            if isinstance(exc, source):
                raise target(str(exc) or type(exc).__name__) from exc
        raise  # pragma: no cover - ClientError is the last entry


class GuardedResolver(AbstractResolver):
    """Resolves through the system resolver, then refuses any address the guard forbids: the
    connector connects to exactly the addresses returned here (no second lookup to rebind)."""

    def __init__(self, *, allowed_hosts: Iterable[str], setting: str = UPSTREAM_ALLOWLIST) -> None:
        self._allowed_hosts = tuple(allowed_hosts)
        self._setting = setting
        self._system = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[ResolveResult]:
        results = await self._system.resolve(host, port, family)
        for result in results:
            check_address(
                host, ipaddress.ip_address(result["host"]), self._allowed_hosts, setting=self._setting
            )
        return results

    async def close(self) -> None:
        await self._system.close()


def _check_literal(url: httpx.URL, allowed_hosts: tuple[str, ...], setting: str) -> None:
    """An IP-literal host is never resolved, so the resolver cannot see it: check it here."""
    try:
        address = ipaddress.ip_address(url.host)
    except ValueError:
        return
    check_address(url.host, address, allowed_hosts, setting=setting)


class _Inflater:
    """gzip or deflate decoded in bounded steps: never more than `room` bytes out at once."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding == "gzip"
        self._name = encoding
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16 if self._gzip else zlib.MAX_WBITS)
        self._started = False

    def decode(self, data: bytes, room: int | None) -> bytes:
        """What `data` inflates to, stopped one byte past `room` (None: no limit); a result
        longer than `room` means the body is past its cap and the rest is left unread."""
        limit = 0 if room is None else room + 1  # zlib: 0 is no limit
        try:
            return self._inflate.decompress(data, limit)
        except zlib.error:
            if self._gzip or self._started:
                raise httpx.DecodingError(f"the upstream's {self._name} body is broken") from None
            # "deflate" as some servers send it: raw, without the zlib header (httpx allows it too)
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                return self._inflate.decompress(data, limit)
            except zlib.error:
                raise httpx.DecodingError("the upstream's deflate body is broken") from None
        finally:
            self._started = True


def _inflater(response: aiohttp.ClientResponse) -> _Inflater | None:
    encoding = response.headers.get("content-encoding", "").strip().lower()
    return _Inflater(encoding) if encoding in ("gzip", "deflate") else None


def _decoded_headers(response: aiohttp.ClientResponse, inflater: _Inflater | None) -> Any:
    """The headers httpx sees: without Content-Encoding once the body was inflated here."""
    if inflater is None:
        return response.raw_headers
    return [(name, value) for name, value in response.raw_headers if name.lower() not in _ENCODED_HEADERS]


async def _read_whole(response: aiohttp.ClientResponse, cap: int | None, inflater: _Inflater | None) -> bytes:
    """The whole body, decoded, refused past `cap` without reading the rest."""
    if cap is None:
        content = await response.read()
        return content if inflater is None else inflater.decode(content, None)
    length = response.content_length
    if inflater is None and length is not None:
        if length > cap:
            response.close()
            raise ResponseTooLarge(cap)
        return await response.read()
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        data = chunk if inflater is None else inflater.decode(chunk, cap - size)
        size += len(data)
        if size > cap:
            response.close()
            raise ResponseTooLarge(cap)
        parts.append(data)
    response.release()
    return b"".join(parts)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(
        self, response: aiohttp.ClientResponse, cap: int | None = None, inflater: _Inflater | None = None
    ) -> None:
        self._response = response
        self._cap = cap
        self._inflater = inflater

    async def __aiter__(self) -> AsyncIterator[bytes]:
        cap, inflater = self._cap, self._inflater
        size = 0
        with _mapped_errors():
            async for chunk in self._response.content.iter_any():
                if inflater is not None:
                    chunk = inflater.decode(chunk, None if cap is None else cap - size)
                size += len(chunk)
                if cap is not None and size > cap:
                    raise ResponseTooLarge(cap)
                yield chunk

    async def aclose(self) -> None:
        # An unfinished body closes its connection rather than returning it to the pool.
        if self._response.content.is_eof():
            self._response.release()
        else:
            self._response.close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx transport over one aiohttp session, created lazily inside the running loop."""

    def __init__(
        self,
        *,
        allowed_hosts: Iterable[str],
        limits: httpx.Limits,
        max_body_bytes: int | None = None,
        setting: str = UPSTREAM_ALLOWLIST,
    ) -> None:
        self._allowed_hosts = tuple(allowed_hosts)
        self._setting = setting  # the allowlist's name, for the refusals' words
        self._limits = limits
        self.max_body_bytes = max_body_bytes
        self._ssl = httpx.create_ssl_context(trust_env=False)  # certifi, verification on
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            limit_per_host=0,
            keepalive_timeout=self._limits.keepalive_expiry or 30,
            ssl=self._ssl,
            resolver=GuardedResolver(allowed_hosts=self._allowed_hosts, setting=self._setting),
            ttl_dns_cache=10,
        )
        session = aiohttp.ClientSession(
            connector=connector, trust_env=False, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        no_stale_connection_retry(session)  # the engine owns the one retry loop
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open_session()
        timeout = request.extensions.get("timeout", {})
        connect, pool = timeout.get("connect"), timeout.get("pool")
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        with _mapped_errors():
            _check_literal(request.url, self._allowed_hosts, self._setting)
            response = await self._session.request(
                request.method,
                str(request.url),
                headers=list(request.headers.multi_items()),
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=connect,
                    sock_read=timeout.get("read"),
                    connect=None if connect is None or pool is None else connect + pool,
                ),
            )
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()}
        inflater = _inflater(response)
        if request.extensions.get(_BUFFERED):
            with _mapped_errors():
                content = await _read_whole(response, self.max_body_bytes, inflater)
            return httpx.Response(
                response.status,
                headers=_decoded_headers(response, inflater),
                content=content,
                extensions=extensions,
            )
        return httpx.Response(
            status_code=response.status,
            headers=_decoded_headers(response, inflater),
            stream=_ResponseStream(response, self.max_body_bytes, inflater),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def __del__(self) -> None:
        # A client dropped with its event loop (a worker's loop ending, one loop per test)
        # cannot be closed any more: let the sockets go with it instead of having aiohttp
        # log "Unclosed client session" from its finalisers.
        session = self._session
        if session is not None and not session.closed:
            session_abandon(session)


def _url(url: httpx.URL | str) -> httpx.URL:
    if isinstance(url, httpx.URL):
        return url
    parsed = _URLS.get(url)
    if parsed is None:
        if len(_URLS) >= 1000:
            _URLS.clear()
        parsed = _URLS[url] = httpx.URL(url)
    return parsed


class UpstreamClient(httpx.AsyncClient):
    """httpx's client API with a short path: no auth flow, redirects, cookies or event hooks.

    Requests that use what the short path leaves out (params, cookies, files, form data)
    take httpx's own path.
    """

    max_body_bytes: int | None = None  # the transport's cap on a response (build_client)

    def build_request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        json: Any = None,
        headers: Any = None,
        timeout: Any = USE_CLIENT_DEFAULT,
        extensions: Any = None,
        **others: Any,
    ) -> httpx.Request:
        if extensions or any(v is not None for v in others.values()) or not isinstance(headers, dict | None):
            return super().build_request(
                method, url, content=content, json=json, headers=headers, timeout=timeout,
                extensions=extensions, **others,
            )  # fmt: skip
        merged = dict(_DEFAULT_HEADERS)
        if json is not None:
            content = orjson.dumps(json)
            merged["content-type"] = "application/json"
        if headers:
            merged.update((name.lower(), value) for name, value in headers.items())
        limits = self.timeout if timeout is USE_CLIENT_DEFAULT else httpx.Timeout(timeout)
        return httpx.Request(
            method, _url(url), headers=merged, content=content, extensions={"timeout": limits.as_dict()}
        )

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = USE_CLIENT_DEFAULT,
        follow_redirects: Any = USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        if not stream:
            request.extensions[_BUFFERED] = True
        response = await self._transport.handle_async_request(request)
        response.request = request
        return response


def build_client(
    *,
    allowed_hosts: Iterable[str],
    max_connections: int = 500,
    max_body_bytes: int | None = None,
    setting: str = UPSTREAM_ALLOWLIST,
) -> httpx.AsyncClient:
    """A guarded client; `max_body_bytes` caps every response it reads (None: no cap);
    `setting`: the name of the setting `allowed_hosts` comes from, for its refusals."""
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30,
    )
    client = UpstreamClient(
        transport=GuardedTransport(
            allowed_hosts=allowed_hosts, limits=limits, max_body_bytes=max_body_bytes, setting=setting
        ),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(30.0, connect=5.0),
    )
    client.max_body_bytes = max_body_bytes
    return client


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_image_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def _client_for_loop(
    clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient],
    allowed_hosts: Iterable[str],
    max_connections: int,
    max_body_bytes: int | None = None,
    setting: str = UPSTREAM_ALLOWLIST,
) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = clients.get(loop)
    if client is None or client.is_closed or getattr(client, "max_body_bytes", None) != max_body_bytes:
        client = build_client(
            allowed_hosts=allowed_hosts,
            max_connections=max_connections,
            max_body_bytes=max_body_bytes,
            setting=setting,
        )
        clients[loop] = client
    return client


def shared_client() -> httpx.AsyncClient:
    """The process's client for the running event loop (clients cannot cross loops), its
    responses capped at RANA_UPSTREAM_MAX_BYTES."""
    from django.conf import settings

    return _client_for_loop(
        _clients, settings.RANA_ALLOWED_UPSTREAM_HOSTS, 500, settings.RANA_UPSTREAM_MAX_BYTES or None
    )


def image_client() -> httpx.AsyncClient:
    """The client that fetches images callers sent by URL: the same guard, but its own
    allowlist (RANA_ALLOWED_IMAGE_HOSTS), since callers, not operators, choose these URLs."""
    from django.conf import settings

    return _client_for_loop(_image_clients, settings.RANA_ALLOWED_IMAGE_HOSTS, 50, setting=IMAGE_ALLOWLIST)


async def shared_client_close() -> None:
    """Close the running loop's clients (ASGI lifespan shutdown)."""
    loop = asyncio.get_running_loop()
    for clients in (_clients, _image_clients):
        client = clients.pop(loop, None)
        if client is not None:
            await client.aclose()
