"""Where RANA may send requests: checked when a base URL is saved and again at connect time.

Rules, each named in the error: http(s) only; no credentials in the URL; the host must
not be (or resolve to) a private, loopback, link-local, metadata or otherwise non-global
address, in any spelling (decimal, hex, octal, short IPv4, IPv4-mapped IPv6), unless it is
listed in RANA_ALLOWED_UPSTREAM_HOSTS.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NUMERIC_HOST = re.compile(r"^[0-9a-fA-FxX.]+$")
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}


class UnsafeUpstreamURL(ValueError):
    """A base URL or address that RANA refuses to call; `rule` names why."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def _literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any spelling; None for a DNS name."""
    candidate = host.strip("[]")
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(candidate) and not candidate.endswith("."):
        try:  # the C library's own reading: 2130706433, 0x7f.1, 0177.0.0.1, 127.1 ...
            return ipaddress.IPv4Address(socket.inet_aton(candidate))
        except OSError:
            return None
    return None


def address_problem(address: IPAddress) -> str | None:
    """Why an address may not be called, or None if it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_unspecified or address.is_reserved or not address.is_global:
        return "a non-public address"
    return None


def is_allowed_host(host: str, allowed_hosts: Iterable[str]) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    return any(host == h.strip().strip("[]").lower().rstrip(".") for h in allowed_hosts if h.strip())


# The settings that list the hosts allowed past the guard, one per kind of URL (each refusal
# names the one to extend): operators' provider URLs, callers' image URLs, alert webhooks.
UPSTREAM_ALLOWLIST = "RANA_ALLOWED_UPSTREAM_HOSTS"
IMAGE_ALLOWLIST = "RANA_ALLOWED_IMAGE_HOSTS"
WEBHOOK_ALLOWLIST = "RANA_ALLOWED_WEBHOOK_HOSTS"


def check_address(
    host: str, address: IPAddress, allowed_hosts: Iterable[str], *, setting: str = UPSTREAM_ALLOWLIST
) -> None:
    """Refuse a forbidden address unless its host is in `allowed_hosts`, the setting named
    `setting` (the one the refusal tells the operator to extend)."""
    problem = address_problem(address)
    if problem and not is_allowed_host(host, allowed_hosts):
        raise UnsafeUpstreamURL(
            "private_address", f"host '{host}' is {problem} ({address}); list it in {setting} to allow it"
        )


def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUpstreamURL("unresolvable", f"host '{host}' does not resolve ({exc})") from exc
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def check_upstream_url(
    url: str,
    *,
    allowed_hosts: Iterable[str],
    resolve_dns: bool = True,
    allow_unresolvable: bool = True,
    setting: str = UPSTREAM_ALLOWLIST,
) -> None:
    """Raise UnsafeUpstreamURL naming the rule that refuses `url`; return if it is fine.

    A name that does not resolve yet is accepted when saving (allow_unresolvable): the
    connect-time guard checks every address it really connects to.
    """
    allowed_hosts = list(allowed_hosts)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUpstreamURL("malformed", f"'{url}' is not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeUpstreamURL("scheme", "only http:// and https:// base URLs are allowed")
    if parts.username or parts.password:
        raise UnsafeUpstreamURL(
            "credentials", "the URL must not carry credentials (user:password@); use the API key field"
        )
    host = parts.hostname
    if not host:
        raise UnsafeUpstreamURL("no_host", "the URL has no host")
    if is_allowed_host(host, allowed_hosts):
        return
    literal = _literal_address(host)
    if literal is not None:
        check_address(host, literal, allowed_hosts, setting=setting)
        return
    if resolve_dns:
        default_port = 443 if parts.scheme == "https" else 80
        try:
            addresses = resolve(host, port or default_port)
        except UnsafeUpstreamURL:
            if allow_unresolvable:
                return
            raise
        for address in addresses:
            check_address(host, address, allowed_hosts, setting=setting)
