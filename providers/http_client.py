"""The one shared upstream HTTP client per event loop, with a connect-time address guard.

The guard resolves each host itself, refuses non-public addresses that are not allowlisted,
and connects to the very address it checked, so DNS rebinding cannot slip past the check
made when the base URL was saved. Redirects are never followed and nothing retries here:
the engine owns the one retry loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable

import httpcore
import httpx

from providers.url_safety import UnsafeUpstreamURL, _literal_address, check_address, resolve


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that checks every address before connecting to it."""

    def __init__(self, allowed_hosts: Iterable[str]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allowed = tuple(allowed_hosts)

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        literal = _literal_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            loop = asyncio.get_running_loop()
            try:
                addresses = await loop.run_in_executor(None, resolve, host, port)
            except UnsafeUpstreamURL as exc:
                raise httpcore.ConnectError(str(exc)) from exc
        try:
            for address in addresses:
                check_address(host, address, self._allowed)
        except UnsafeUpstreamURL as exc:
            raise httpcore.ConnectError(f"refused by RANA's upstream guard: {exc}") from exc
        return await self._inner.connect_tcp(
            str(addresses[0]),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(self, *args, **kwargs):  # pragma: no cover - never used
        raise httpcore.ConnectError("unix sockets are not upstreams")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, *, allowed_hosts: Iterable[str], limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False, retries=0)
        ssl_context = self._pool._ssl_context  # the context httpx built (certifi, verify on)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            retries=0,
            network_backend=GuardedBackend(allowed_hosts),
        )


def build_client(*, allowed_hosts: Iterable[str], max_connections: int = 500) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30,
    )
    return httpx.AsyncClient(
        transport=GuardedTransport(allowed_hosts=allowed_hosts, limits=limits),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(30.0, connect=5.0),
    )


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def shared_client() -> httpx.AsyncClient:
    """The process's client for the running event loop (clients cannot cross loops)."""
    from django.conf import settings

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = build_client(allowed_hosts=settings.RANA_ALLOWED_UPSTREAM_HOSTS)
        _clients[loop] = client
    return client
