"""Base URLs: refused by rule when saved, and again at connect time (DNS tricks)."""

from __future__ import annotations

import socket

import httpx
import pytest
from django.core.exceptions import ValidationError

from providers.http_client import build_client
from providers.models import Provider, ProviderKind
from providers.url_safety import UnsafeUpstreamURL, check_upstream_url


def refused_rule(url: str, allowed: list[str] | None = None) -> str:
    with pytest.raises(UnsafeUpstreamURL) as info:
        check_upstream_url(url, allowed_hosts=allowed or [])
    return info.value.rule


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/v1",
        "http://2130706433/v1",  # decimal
        "http://0x7f000001/v1",  # hex
        "http://0177.0.0.1/v1",  # octal
        "http://127.1/v1",  # short form
        "http://[::1]/v1",
        "http://[::ffff:127.0.0.1]/v1",  # IPv4-mapped IPv6
        "http://[::ffff:7f00:1]/v1",
        "http://10.0.0.5/v1",
        "http://192.168.1.1/v1",
        "http://172.16.0.1/v1",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://localhost:11434/v1",  # resolves to loopback
    ],
)
def test_non_public_addresses_are_refused_in_every_spelling(url):
    assert refused_rule(url) == "private_address"


def test_the_error_names_the_rule_and_the_allowlist_setting():
    with pytest.raises(UnsafeUpstreamURL) as info:
        check_upstream_url("http://169.254.169.254/", allowed_hosts=[])
    assert "metadata" in str(info.value)
    assert "RANA_ALLOWED_UPSTREAM_HOSTS" in str(info.value)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https://user:secret@api.example.com/v1", "credentials"),
        ("https:///v1", "no_host"),
        ("http://[::1/", "malformed"),
    ],
)
def test_other_rules(url, rule):
    assert refused_rule(url) == rule


def test_allowlisted_hosts_pass():
    check_upstream_url("http://127.0.0.1:11434/v1", allowed_hosts=["127.0.0.1"])
    check_upstream_url("http://localhost:11434/v1", allowed_hosts=["LOCALHOST"])


def test_public_literal_address_passes_without_dns():
    check_upstream_url("https://8.8.8.8/v1", allowed_hosts=[])


def test_unresolvable_name_is_accepted_on_save_but_refused_when_strict():
    check_upstream_url("https://api.openai.com/v1", allowed_hosts=[])  # no DNS here
    with pytest.raises(UnsafeUpstreamURL) as info:
        check_upstream_url("https://no-such-host.invalid/v1", allowed_hosts=[], allow_unresolvable=False)
    assert info.value.rule == "unresolvable"


@pytest.mark.django_db
def test_provider_form_validation_names_the_rule(settings):
    settings.RANA_ALLOWED_UPSTREAM_HOSTS = []
    provider = Provider(
        name="evil", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="http://0x7f000001:8000/v1"
    )
    with pytest.raises(ValidationError) as info:
        provider.full_clean()
    assert "loopback" in str(info.value.message_dict["base_url"])


def _listening_socket() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


async def test_connect_time_guard_refuses_a_name_that_resolves_to_loopback(monkeypatch):
    """DNS rebinding: a name that was public when saved resolves to loopback at call time."""
    server = _listening_socket()
    port = server.getsockname()[1]
    real_getaddrinfo = socket.getaddrinfo

    def rebinding_getaddrinfo(host, *args, **kwargs):
        if host == "rebind.example.com":
            return real_getaddrinfo("127.0.0.1", *args, **kwargs)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_getaddrinfo)
    async with build_client(allowed_hosts=["127.0.0.1"]) as client:
        with pytest.raises(httpx.ConnectError, match="loopback"):
            await client.get(f"http://rebind.example.com:{port}/v1/models")
    server.close()


async def test_connect_time_guard_refuses_a_literal_private_address_that_is_not_allowlisted():
    """An IP literal is never resolved, so the resolver's check cannot see it: it is checked too."""
    server = _listening_socket()
    port = server.getsockname()[1]
    async with build_client(allowed_hosts=[]) as client:
        with pytest.raises(httpx.ConnectError, match="loopback"):
            await client.get(f"http://127.0.0.1:{port}/v1/models")
    server.close()


async def test_connect_time_guard_lets_allowlisted_hosts_through():
    server = _listening_socket()
    port = server.getsockname()[1]
    async with build_client(allowed_hosts=["127.0.0.1"]) as client:
        with pytest.raises(httpx.ReadTimeout):  # connected: the listener never answers
            await client.get(f"http://127.0.0.1:{port}/", timeout=httpx.Timeout(0.2))
    server.close()


async def test_client_does_not_follow_redirects_or_read_proxy_settings(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://10.0.0.1:3128")
    client = build_client(allowed_hosts=[])
    assert client.follow_redirects is False
    assert client._mounts == {}  # trust_env off: no proxy mounts
    await client.aclose()
