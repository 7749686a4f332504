"""Proxy headers are believed only from the proxies RANA_TRUSTED_PROXIES names.

X-Forwarded-For and X-Forwarded-Proto are whatever the sender wrote: a client that talks to
RANA directly could claim any address (and dodge the per-address login lockout) or claim
https. ``TrustedProxyMiddleware`` runs first, before Django or axes read a header: when the
direct peer (REMOTE_ADDR) is not a trusted proxy it removes every forwarded header, so
Django's SECURE_PROXY_SSL_HEADER and axes see only what a trusted proxy set. The client's
address is then ``client_ip``: REMOTE_ADDR for a direct peer; behind trusted proxies, the
right-most X-Forwarded-For entry that is not itself a trusted proxy (entries to its left were
written by the client or by proxies nobody vouches for). axes asks ``client_ip`` too
(AXES_CLIENT_IP_CALLABLE).

/v1/ never gets here: the lean ASGI path (gateway.asgi) runs no Django middleware, and the API
reads no forwarded header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# The forwarded family: removed from a request whose peer is not a trusted proxy.
FORWARDED_HEADERS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
)


def parse_trusted_proxies(values: Iterable[str], name: str = "RANA_TRUSTED_PROXIES") -> tuple[Network, ...]:
    """IP addresses and CIDRs ("10.0.0.5", "10.0.0.0/8", "fd00::/8"); ValueError naming a bad one
    (and the setting `name`)."""
    networks = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not an IP address or CIDR") from None
    return tuple(networks)


def _address(value: str) -> Address | None:
    """An address as proxies write it: bare, "v4:port", "[v6]" or "[v6]:port"; None if none."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_in(value: str, networks: tuple[Network, ...]) -> bool:
    """True when the address `value` (as client_address gives it) is in one of `networks`."""
    return _trusted(_address(value or ""), networks)


def _trusted(address: Address | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def _networks() -> tuple[Network, ...]:
    from django.conf import settings

    return settings.RANA_TRUSTED_PROXY_NETWORKS


def peer_is_trusted(meta: dict, networks: tuple[Network, ...] | None = None) -> bool:
    """True when the direct peer (REMOTE_ADDR) is one of the trusted proxies."""
    networks = _networks() if networks is None else networks
    return bool(networks) and _trusted(_address(meta.get("REMOTE_ADDR", "")), networks)


def client_address(meta: dict, networks: tuple[Network, ...] | None = None) -> str | None:
    """The client's address for a request's META (trusting only the given proxies)."""
    networks = _networks() if networks is None else networks
    remote = meta.get("REMOTE_ADDR") or None
    peer = _address(remote or "")
    if not networks or not _trusted(peer, networks):
        return str(peer) if peer is not None else remote
    nearest = peer  # the hop nearest the client known so far: a trusted proxy
    for entry in reversed(meta.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        hop = _address(entry)
        if hop is None:
            # A trusted proxy wrote something that is no address: it alone is vouched for.
            break
        if not _trusted(hop, networks):
            return str(hop)
        nearest = hop
    return str(nearest)


def client_ip(request) -> str | None:
    """The client's address (axes' AXES_CLIENT_IP_CALLABLE); works without the middleware too."""
    known = getattr(request, "client_ip", None)
    return known if known is not None else client_address(request.META)


class TrustedProxyMiddleware:
    """First in MIDDLEWARE: drop forwarded headers from untrusted peers; set request.client_ip."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def _prepare(self, request) -> None:
        meta = request.META
        networks = _networks()
        if not peer_is_trusted(meta, networks):
            for name in FORWARDED_HEADERS:
                meta.pop(name, None)
        request.client_ip = client_address(meta, networks)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        self._prepare(request)
        return self.get_response(request)

    async def __acall__(self, request):
        self._prepare(request)
        return await self.get_response(request)
