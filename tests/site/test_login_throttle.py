"""Login throttling (django-axes, database handler): lockout per username and per address.

RANA_LOGIN_FAILURE_LIMIT failed logins (5) for one username or from one address lock logging
in for RANA_LOGIN_COOLOFF_MIN minutes (15): the failure that reaches the limit already gets
the 429 page, and so does every login after it, right password or not; a successful login resets the
count; the admin's login is the same. /v1/ never touches any of it: the lean ASGI path runs no
Django middleware, and a login flood against a live server leaves the API answering.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from asgiref.sync import sync_to_async
from axes.middleware import AxesMiddleware
from axes.models import AccessAttempt
from django.core.signals import request_started
from django.utils import timezone

from gateway.services.keys import gateway_key_create
from rana_site.proxies import TrustedProxyMiddleware
from tests.fakes.upstream import FakeUpstream
from tests.gateway.live import LiveGateway, start_gateway
from tests.site.test_settings import manage

PASSWORD = "correct-horse-9"
LOGIN, ADMIN_LOGIN = "/accounts/login/", "/admin/login/"


@pytest.fixture(autouse=True)
def _fast_hashes(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ada(django_user_model):
    return django_user_model.objects.create_user("ada", "ada@example.com", PASSWORD)


def login(client, username: str, password: str, *, url: str = LOGIN, address: str = "127.0.0.1"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


def fail(client, username: str, times: int, **kwargs) -> None:
    """Failures below the limit: the form again, with its error."""
    for _ in range(times):
        assert login(client, username, "wrong", **kwargs).status_code == 200


def lock(client, username: str, **kwargs) -> None:
    """The failure that reaches the limit."""
    assert login(client, username, "wrong", **kwargs).status_code == 429


@pytest.mark.django_db
def test_the_limit_locks_the_username_even_with_the_right_password(client, ada, settings):
    assert settings.AXES_FAILURE_LIMIT == 5 and settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    fail(client, "ada", 4)
    lock(client, "ada")
    locked = login(client, "ada", PASSWORD)
    assert locked.status_code == 429
    assert "registration/locked_out.html" in [template.name for template in locked.templates]
    page = locked.content.decode()
    assert 'class="card narrow" id="rana-locked-out"' in page and "Try again in 15 minutes" in page
    assert "_auth_user_id" not in client.session
    # from another address too: the username is locked, not just this client
    assert login(client, "ada", PASSWORD, address="198.51.100.7").status_code == 429


@pytest.mark.django_db
def test_the_limit_locks_the_address_across_usernames(client, ada):
    for i in range(4):
        assert login(client, f"guess{i}", "wrong", address="203.0.113.9").status_code == 200
    lock(client, "guess4", address="203.0.113.9")
    assert login(client, "ada", PASSWORD, address="203.0.113.9").status_code == 429
    ok = login(client, "ada", PASSWORD, address="198.51.100.7")  # ada from elsewhere is fine
    assert ok.status_code == 302 and client.session["_auth_user_id"] == str(ada.pk)


@pytest.mark.django_db
def test_a_successful_login_resets_the_count(client, ada):
    fail(client, "ada", 4)
    assert login(client, "ada", PASSWORD).status_code == 302
    assert not AccessAttempt.objects.exists()
    client.logout()
    fail(client, "ada", 4)  # four more: not five in a row
    assert login(client, "ada", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_the_lockout_ends_after_the_cool_off(client, ada):
    fail(client, "ada", 4)
    lock(client, "ada")
    assert login(client, "ada", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - dt.timedelta(minutes=16))
    assert login(client, "ada", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_attempts_while_locked_out_are_not_recorded(client, ada):
    fail(client, "ada", 4)
    lock(client, "ada")
    for _ in range(20):
        assert login(client, "ada", "wrong").status_code == 429
    assert sum(AccessAttempt.objects.values_list("failures_since_start", flat=True)) == 5


@pytest.mark.django_db
def test_the_admin_login_is_covered_and_shares_the_count(client, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    fail(client, "root", 2, url=ADMIN_LOGIN)
    fail(client, "root", 2)  # the site's login counts toward the same limit
    lock(client, "root", url=ADMIN_LOGIN)
    locked = login(client, "root", PASSWORD, url=ADMIN_LOGIN)
    assert locked.status_code == 429 and b"rana-locked-out" in locked.content
    assert login(client, "root", PASSWORD).status_code == 429


def test_the_limit_and_cool_off_come_from_the_environment(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite3'}"}
    code = "from django.conf import settings; print(settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME)"
    shown = manage(
        "shell",
        "-v",
        "0",
        "-c",
        code,
        env={**env, "RANA_LOGIN_FAILURE_LIMIT": "3", "RANA_LOGIN_COOLOFF_MIN": "2"},
    )
    assert shown.returncode == 0 and shown.stdout.split() == ["3", "0:02:00"], shown.stderr
    bad = manage("check", env={**env, "RANA_LOGIN_FAILURE_LIMIT": "0"})
    assert bad.returncode != 0 and "RANA_LOGIN_FAILURE_LIMIT" in bad.stderr


# --- the API is not on this path -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_api_path_runs_no_django_middleware_and_no_axes(ready_chain, monkeypatch):
    """A /v1/ request through the real ASGI application: no request_started, no middleware."""
    from rana_site.asgi import application  # imported here: it starts the ledger recorder

    touched: list[str] = []
    monkeypatch.setattr(AxesMiddleware, "__acall__", _recording(AxesMiddleware.__acall__, touched, "axes"))
    monkeypatch.setattr(AxesMiddleware, "__call__", _recording(AxesMiddleware.__call__, touched, "axes"))
    monkeypatch.setattr(
        TrustedProxyMiddleware, "_prepare", _recording(TrustedProxyMiddleware._prepare, touched, "proxies")
    )

    def started(**kwargs):
        touched.append("request_started")

    request_started.connect(started)
    try:
        key = (await sync_to_async(gateway_key_create)(name="throttle-test"))[1]
        transport = httpx.ASGITransport(app=application, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as api:
            models = await api.get("/v1/models", headers={"authorization": f"Bearer {key}"})
            assert models.status_code == 200 and models.json()["data"], models.text
            body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
            answer = await api.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            )
            assert answer.status_code == 200, answer.text
            assert touched == []
            page = await api.get(LOGIN)  # the probe works: Django's own pages do run all of it
            assert page.status_code == 200
        assert {"request_started", "axes", "proxies"} <= set(touched)
    finally:
        request_started.disconnect(started)


def _recording(method, touched: list[str], name: str):
    def wrapper(self, *args, **kwargs):
        touched.append(name)
        return method(self, *args, **kwargs)

    return wrapper


# --- a login flood against a live server ---------------------------------------------------

FLOOD, FLOOD_THREADS = 200, 8
SEED_USER = f"""
from django.contrib.auth import get_user_model
get_user_model().objects.create_user("ada", "ada@example.com", {PASSWORD!r})
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveGateway]:
    with FakeUpstream() as fake:
        gateway = start_gateway(
            upstream_url=fake.base_url, workdir=tmp_path_factory.mktemp("flood"), workers=2
        )
        try:
            seeded = gateway.manage("shell", "-c", SEED_USER)
            assert seeded.returncode == 0, seeded.stderr
            yield gateway
        finally:
            gateway.stop()


def _login_client(site: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=site, timeout=60)
    page = client.get(LOGIN)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:300]
    return client, token.group(1)


def _post_login(client: httpx.Client, token: str, username: str, password: str) -> int:
    data = {"username": username, "password": password, "csrfmiddlewaretoken": token}
    return client.post(LOGIN, data=data).status_code


def _api_call(api: httpx.Client, key: str, i: int) -> tuple[int, float]:
    body = {"model": "main", "messages": [{"role": "user", "content": f"hello {i}"}]}
    started = time.perf_counter()
    response = api.post("/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    return response.status_code, time.perf_counter() - started


def test_a_login_flood_leaves_the_api_answering_and_the_login_locked(live: LiveGateway):
    site = live.base_url.removesuffix("/v1")
    key = live.keys["full"]
    api = httpx.Client(base_url=live.base_url, timeout=30)
    baseline = [_api_call(api, key, i) for i in range(20)]
    assert {status for status, _ in baseline} == {200}

    logins = [_login_client(site) for _ in range(FLOOD_THREADS)]
    flooding = threading.Event()
    during: list[tuple[int, float]] = []

    def timed_api() -> None:
        i = 0
        while flooding.is_set():
            during.append(_api_call(api, key, i))
            i += 1

    def failed_login(i: int) -> int:
        client, token = logins[i % FLOOD_THREADS]
        return _post_login(client, token, "ada" if i % 2 else f"guess{i}", "wrong")

    with ThreadPoolExecutor(FLOOD_THREADS + 1) as pool:
        flooding.set()
        prober = pool.submit(timed_api)
        try:
            started = time.perf_counter()
            statuses = Counter(pool.map(failed_login, range(FLOOD)))
            flood_s = time.perf_counter() - started
        finally:
            flooding.clear()
        prober.result()

    # the login locked at the limit (a few in flight as it locked may have been counted)
    assert set(statuses) <= {200, 429} and statuses[200] <= 4 + FLOOD_THREADS, statuses
    recorded = live.query("SELECT sum(failures_since_start) FROM axes_accessattempt")[0][0]
    assert recorded <= 5 + FLOOD_THREADS, recorded  # attempts while locked are not recorded
    client, token = logins[0]
    assert _post_login(client, token, "ada", PASSWORD) == 429  # still locked, right password or not

    # the API kept answering all through the flood, and promptly
    latencies = [seconds for _, seconds in during]
    assert len(during) >= 10 and {status for status, _ in during} == {200}, Counter(s for s, _ in during)
    base_p50 = statistics.median(seconds for _, seconds in baseline)
    p50 = statistics.median(latencies)
    summary = (
        f"{len(during)} API calls in {flood_s:.2f}s of flood ({statuses}): p50 {p50 * 1000:.1f} ms,"
        f" max {max(latencies) * 1000:.1f} ms (before: p50 {base_p50 * 1000:.1f} ms)"
    )
    print(summary)
    assert p50 < 0.25 and max(latencies) < 2.0, summary
