"""The scale-out layout for real: scripts/serve with two workers on PostgreSQL and Redis.

Against the PostgreSQL and Redis servers that scripts/test starts (RANA_TEST_POSTGRES_URL,
RANA_TEST_REDIS_URL): concurrent requests all answer and all reach the ledger, and a key's
rate limit holds across both workers because the count lives in Redis.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.gateway.live import LiveGateway, start_gateway
from tests.servers import fresh_database, server_url

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
REQUESTS = 200


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    yield from fresh_database("rana_live")


@pytest.fixture(scope="module")
def live(tmp_path_factory, database) -> Iterator[LiveGateway]:
    redis_url = server_url("RANA_TEST_REDIS_URL").rsplit("/", 1)[0] + "/3"
    with FakeUpstream() as fake:
        env = {"DATABASE_URL": database, "REDIS_URL": redis_url, "CELERY_BROKER_URL": "memory://"}
        gateway = start_gateway(
            upstream_url=fake.base_url, workdir=tmp_path_factory.mktemp("scale-out"), workers=2, extra_env=env
        )
        try:
            yield gateway
        finally:
            gateway.stop()


def _rows(database: str, sql: str) -> list[tuple]:
    with psycopg.connect(database) as db:
        return db.execute(sql).fetchall()


def test_two_workers_on_postgres_and_redis_answer_everything_and_lose_no_row(live, database):
    def call(i: int) -> tuple[int, int]:
        body = {"model": "main", "messages": [{"role": "user", "content": f"hi {i}"}], "stream": i % 4 == 0}
        response = client.post("/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
        return response.status_code, int(response.headers.get("x-rana-attempts", 0))

    key = live.keys["full"]
    with httpx.Client(base_url=live.base_url, timeout=30) as client, ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(call, range(REQUESTS)))
    assert Counter(status for status, _ in answers) == {200: REQUESTS}
    sql = "SELECT count(*) FROM providers_completion WHERE source = 'api'"
    deadline = time.monotonic() + 10  # the ledger is written behind the answers
    while _rows(database, sql) != [(REQUESTS,)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rows(database, sql) == [(REQUESTS,)]
    assert _rows(database, "SELECT count(*) FROM providers_attempt") == [(sum(n for _, n in answers),)]


def test_a_key_rate_limit_holds_across_both_workers(live):
    key = live.keys["rpm"]  # 2 requests per minute
    with ThreadPoolExecutor(6) as pool, httpx.Client(base_url=live.base_url, timeout=30) as client:
        body = {"model": "main", "messages": [{"role": "user", "content": "hi"}]}
        statuses = list(
            pool.map(
                lambda _: (
                    client.post(
                        "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
                    ).status_code
                ),
                range(12),
            )
        )
    assert Counter(statuses) == {200: 2, 429: 10}
