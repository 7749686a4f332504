"""Proxy headers are believed only from RANA_TRUSTED_PROXIES (rana_site/proxies.py).

An untrusted peer's X-Forwarded-Proto cannot make a request secure and its X-Forwarded-For
cannot change the address the login lockout counts; a trusted proxy's headers are used, the
client being the right-most X-Forwarded-For entry that is not itself a trusted proxy.
"""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.test import RequestFactory

from rana_site.proxies import TrustedProxyMiddleware, client_address, client_ip, parse_trusted_proxies
from tests.site.test_settings import manage

PROXY, CLIENT, ATTACKER = "10.0.0.7", "198.51.100.23", "203.0.113.9"
TRUSTED = parse_trusted_proxies(["10.0.0.0/24", "fd00::1"])


@pytest.fixture(autouse=True)
def _fast_hashes(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def trust_proxy(settings):
    settings.RANA_TRUSTED_PROXY_NETWORKS = TRUSTED


@pytest.fixture
def production_https(settings):
    """What DEBUG=0 sets: redirect to https, and believe X-Forwarded-Proto (once it is safe to)."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


def through_middleware(**meta) -> object:
    """The request as the views see it after TrustedProxyMiddleware."""
    seen = []
    middleware = TrustedProxyMiddleware(lambda request: seen.append(request) or "response")
    assert middleware(RequestFactory().get("/", **meta)) == "response"
    return seen[0]


def meta(remote: str, forwarded_for: str | None = None) -> dict[str, str]:
    values = {"REMOTE_ADDR": remote}
    if forwarded_for is not None:
        values["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return values


# --- the client's address ------------------------------------------------------------------


def test_without_trusted_proxies_the_client_is_the_peer_whatever_the_headers_say():
    assert client_address(meta(ATTACKER, "1.2.3.4"), ()) == ATTACKER
    assert client_address(meta(PROXY, CLIENT), ()) == PROXY  # not listed: even a real proxy is the client


def test_an_untrusted_peer_is_the_client_even_with_proxies_trusted():
    assert client_address(meta(ATTACKER, f"{CLIENT}, {PROXY}"), TRUSTED) == ATTACKER


def test_behind_a_trusted_proxy_the_client_is_the_right_most_untrusted_entry():
    assert client_address(meta(PROXY, CLIENT), TRUSTED) == CLIENT
    # whatever the client wrote itself sits to the left of what the proxy appended
    assert client_address(meta(PROXY, f"6.6.6.6, {CLIENT}"), TRUSTED) == CLIENT
    # two trusted hops (10.0.0.8 in front of 10.0.0.7): skipped, the client is beyond them
    assert client_address(meta(PROXY, f"6.6.6.6, {CLIENT}, 10.0.0.8"), TRUSTED) == CLIENT


def test_addresses_are_read_as_proxies_write_them():
    assert client_address(meta(PROXY, f" {CLIENT}:51234 "), TRUSTED) == CLIENT
    assert client_address(meta(PROXY, "[2001:db8::5]:443"), TRUSTED) == "2001:db8::5"
    assert client_address(meta("fd00::1", "2001:db8::5"), TRUSTED) == "2001:db8::5"
    assert client_address(meta("::ffff:10.0.0.7", CLIENT), TRUSTED) == CLIENT  # IPv4-mapped peer


def test_a_trusted_proxy_without_or_with_garbage_forwarded_for_is_itself_the_client():
    assert client_address(meta(PROXY), TRUSTED) == PROXY
    assert client_address(meta(PROXY, f"{CLIENT}, unknown"), TRUSTED) == PROXY
    assert client_address(meta(PROXY, "10.0.0.8"), TRUSTED) == "10.0.0.8"  # only trusted hops: the farthest


def test_a_bad_trusted_proxies_value_stops_start_up_naming_the_variable(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite3'}", "RANA_TRUSTED_PROXIES": "10.0.0.1,proxy"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "RANA_TRUSTED_PROXIES: 'proxy' is not an IP address or CIDR" in result.stderr
    good = manage("check", env={**env, "RANA_TRUSTED_PROXIES": "10.0.0.1, 172.16.0.0/12,fd00::/8"})
    assert good.returncode == 0, good.stderr


# --- the middleware ------------------------------------------------------------------------


def test_untrusted_peers_lose_every_forwarded_header(trust_proxy, production_https):
    headers = {
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_FOR": "1.2.3.4",
        "HTTP_X_FORWARDED_HOST": "evil.example",
        "HTTP_X_REAL_IP": "1.2.3.4",
        "HTTP_FORWARDED": "for=1.2.3.4;proto=https",
    }
    request = through_middleware(REMOTE_ADDR=ATTACKER, **headers)
    assert not request.is_secure()
    assert not any(name in request.META for name in headers)
    assert request.client_ip == client_ip(request) == ATTACKER


def test_a_trusted_proxys_headers_are_kept_and_used(trust_proxy, production_https):
    request = through_middleware(
        REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_FOR=f"6.6.6.6, {CLIENT}"
    )
    assert request.is_secure()
    assert request.META["HTTP_X_FORWARDED_FOR"] == f"6.6.6.6, {CLIENT}"
    assert request.client_ip == client_ip(request) == CLIENT


def test_with_no_trusted_proxies_even_a_real_proxy_is_not_believed(production_https):
    request = through_middleware(
        REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_FOR=CLIENT
    )
    assert not request.is_secure() and request.client_ip == PROXY


@pytest.mark.django_db
def test_through_the_whole_stack_an_untrusted_https_claim_is_redirected(
    client, trust_proxy, production_https
):
    spoofed = client.get("/healthz", REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_PROTO="https")
    assert spoofed.status_code == 301 and spoofed["Location"].startswith("https://")
    proxied = client.get("/healthz", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200 and proxied.json() == {"status": "ok"}


# --- the login lockout's address -----------------------------------------------------------


def fail_login(client, username: str, **meta) -> int:
    return client.post("/accounts/login/", {"username": username, "password": "wrong"}, **meta).status_code


@pytest.mark.django_db
def test_an_untrusted_peer_cannot_dodge_the_address_lockout_with_forwarded_for(client, settings, trust_proxy):
    limit = settings.AXES_FAILURE_LIMIT
    for i in range(limit - 1):  # a new username and a new claimed address each time
        assert fail_login(client, f"user{i}", REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR=f"1.1.1.{i}") == 200
    # the limit-th failure locks the peer's address, whatever it claims to be
    assert fail_login(client, "last", REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR="9.9.9.9") == 429
    assert fail_login(client, "someone-else", REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR="9.9.9.8") == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ATTACKER}
    assert fail_login(client, "someone-else", REMOTE_ADDR="203.0.113.10") == 200  # another peer is not locked


@pytest.mark.django_db
def test_behind_a_trusted_proxy_the_lockout_counts_each_client_apart(client, settings, trust_proxy):
    limit = settings.AXES_FAILURE_LIMIT
    for i in range(limit - 1):
        assert (
            fail_login(client, f"user{i}", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"6.6.6.{i}, {CLIENT}")
            == 200
        )
    assert fail_login(client, "last", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=CLIENT) == 429
    assert fail_login(client, "someone-else", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=CLIENT) == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {CLIENT}
    # the proxy itself, and the other clients behind it, are not locked out
    assert fail_login(client, "someone-else", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.99") == 200
