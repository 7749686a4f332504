"""Exact budgets for real: scripts/serve with two workers on PostgreSQL and Redis, 20 requests
in flight against a $1 budget, and a client hammering a spent one.

Against the PostgreSQL and Redis servers that scripts/test starts (RANA_TEST_POSTGRES_URL,
RANA_TEST_REDIS_URL). Each answer of the fake upstream costs $0.09 ($1 / $2 per million
tokens, 10,000 in and 40,000 out) and takes 0.2 s, so the requests overlap; each request
holds its estimate ($0.090004) while it runs. Without holds, every request in flight passed
the check before any was charged (the first 20 alone spend $1.80).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import psycopg
import pytest

from tests.fakes.faults import FakeUsage, Fault
from tests.fakes.upstream import FakeUpstream
from tests.gateway.live import LiveGateway, start_gateway
from tests.servers import fresh_database, server_url

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

BUDGET = Decimal("1")
REQUEST_COST = Decimal("0.09")
BODY = {"messages": [{"role": "user", "content": "x" * 40_000}], "max_tokens": 40_000}
SAMPLE_S = 1.0  # RANA_BUDGET_REFUSAL_SAMPLE_S of the live gateway


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    yield from fresh_database("rana_budget")


@pytest.fixture(scope="module")
def live(tmp_path_factory, database) -> Iterator[LiveGateway]:
    import redis

    redis_url = server_url("RANA_TEST_REDIS_URL").rsplit("/", 1)[0] + "/5"
    redis.Redis.from_url(redis_url).flushdb()
    with FakeUpstream() as fake:
        fake.set_default(Fault.ok(usage=FakeUsage(input=10_000, output=40_000), delay_s=0.2))
        env = {
            "DATABASE_URL": database,
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": "memory://",
            "RANA_BUDGET_REFUSAL_SAMPLE_S": str(SAMPLE_S),
        }
        gateway = start_gateway(
            upstream_url=fake.base_url, workdir=tmp_path_factory.mktemp("budget"), workers=2, extra_env=env
        )
        try:
            yield gateway
        finally:
            gateway.stop()


def _rows(database: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(database) as db:
        return db.execute(sql, params).fetchall()


def _shell(live: LiveGateway, code: str) -> str:
    done = live.manage("shell", "--no-imports", "-c", code)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def spend_at_twenty_in_flight(base_url: str, key: str, model: str) -> Counter:
    """20 clients send requests until one is refused because the budget is spent (a refusal
    because requests in flight hold the rest, Retry-After 1, is tried again)."""
    statuses: Counter = Counter()
    lock = threading.Lock()

    def client_loop(_: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            for _try in range(500):
                response = client.post(
                    "/chat/completions",
                    json={"model": model, **BODY},
                    headers={"Authorization": f"Bearer {key}"},
                )
                with lock:
                    statuses[response.status_code] += 1
                if response.status_code == 429:
                    if int(response.headers["retry-after"]) > 1:
                        return
                    time.sleep(0.02)
                else:
                    assert response.status_code == 200, response.text

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(client_loop, range(20)))
    return statuses


def ledger_spend(database: str, where: str, param: str, answered: int) -> Decimal:
    """The ledger's spend once every answered request's row is written (behind the answers)."""
    sql = (
        "SELECT count(*) FILTER (WHERE outcome = 'success'), coalesce(sum(cost_usd), 0) "
        f"FROM providers_completion WHERE {where} = %s"
    )
    deadline = time.monotonic() + 15
    while (rows := _rows(database, sql, (param,)))[0][0] < answered and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rows[0][0] == answered, rows
    return rows[0][1]


def test_a_key_budget_holds_at_twenty_in_flight_across_two_workers(live, database):
    key = _shell(
        live,
        "from decimal import Decimal; from gateway.services.keys import gateway_key_create; "
        "print(gateway_key_create(name='dollar', daily_budget_usd=Decimal('1'))[1])",
    )
    statuses = spend_at_twenty_in_flight(live.base_url, key, "main")
    spent = ledger_spend(database, "gateway_key_prefix", key[:13], statuses[200])
    assert BUDGET <= spent <= BUDGET + REQUEST_COST, (spent, statuses)


def test_a_chain_budget_holds_at_twenty_in_flight_across_two_workers(live, database):
    _shell(
        live,
        "from decimal import Decimal; from providers.models import FallbackChain; "
        "c = FallbackChain.objects.get(slug='solo'); c.daily_budget_usd = Decimal('1'); c.save()",
    )
    time.sleep(1.2)  # the workers see the new configuration within RANA_CONFIG_RECHECK_S
    statuses = spend_at_twenty_in_flight(live.base_url, live.keys["full"], "solo")
    spent = ledger_spend(database, "chain_slug", "solo", statuses[200])
    assert BUDGET <= spent <= BUDGET + REQUEST_COST, (spent, statuses)


def test_hammering_a_spent_budget_writes_sampled_rows_that_count_every_429(live, database):
    """Last in this module: it stops the gateway, whose workers write what they counted."""
    key, refused = live.keys["budget"], Counter()  # a $0 daily budget
    started = time.monotonic()

    def hammer(_: int) -> None:
        with httpx.Client(base_url=live.base_url, timeout=30) as client:
            while time.monotonic() - started < 3 * SAMPLE_S:
                response = client.post(
                    "/chat/completions",
                    json={"model": "main", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"Authorization": f"Bearer {key}"},
                )
                refused[response.status_code] += 1

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(hammer, range(10)))
    elapsed = time.monotonic() - started
    live.stop()  # graceful: each worker writes its counted refusals, then its ledger
    assert set(refused) == {429} and refused[429] > 100, refused
    rows, represented = _rows(
        database,
        "SELECT count(*), sum(represents) FROM providers_completion WHERE gateway_key_prefix = %s",
        (key[:13],),
    )[0]
    assert represented == refused[429]
    assert rows <= 2 * (elapsed / SAMPLE_S + 2), rows  # two workers, each one row per interval
    rolled = _rows(
        database,
        "SELECT sum(completions) FROM dashboards_completionrollup "
        "WHERE grain = 'h' AND gateway_key_prefix = %s AND outcome = 'budget_blocked'",
        (key[:13],),
    )
    assert rolled == [(refused[429],)]
