"""The request log: filters, search, keyset pages and form errors against a known ledger."""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
import pytest
from django.urls import reverse

from gateway.requestlog import query
from gateway.requestlog.query import Cursor, LogQuery, log_page
from providers.models import CompletionBody, FallbackChain
from tests.gateway.request_log_seed import T0, completion, seed

pytestmark = pytest.mark.django_db
URL = reverse("requests:list")


def _ids(response) -> list[int]:
    return [row["id"].int for row in response.context["page"].rows]


def test_lists_every_completion_newest_first_with_id_breaking_ties(admin_client):
    seed()
    response = admin_client.get(URL)
    assert response.status_code == 200
    assert _ids(response) == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]


def test_needs_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_nav_links_to_the_request_log(admin_client):
    assert f'href="{URL}"' in admin_client.get(reverse("dashboards:index")).content.decode()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"chain": "alpha"}, [9, 7, 5, 3, 1]),
        ({"chain": "beta", "outcome": "failed"}, [6]),
        ({"outcome": "success", "source": "api", "fallback": "yes"}, [7]),
        ({"fallback": "no", "chain": "alpha"}, [9, 5, 3, 1]),
        ({"key": "rana_k1"}, [8, 5, 2]),
        ({"cost_above": "0.01"}, [6]),
        ({"latency_above": "500"}, [6]),
        ({"provider": "backup"}, [7]),
        ({"provider": "primary", "model": "m2"}, []),
        ({"model": "m2"}, [7]),
        ({"start": "2026-03-02T12:05:00+00:00", "end": "2026-03-02T12:08:00+00:00"}, [8, 7, 6]),
        ({"start": "2026-03-02T12:05", "end": "2026-03-02T12:08", "tz": "Europe/Paris"}, []),
        ({"start": "2026-03-02T13:05", "end": "2026-03-02T13:08", "tz": "Europe/Paris"}, [8, 7, 6]),
    ],
)
def test_filters_return_exactly_the_matching_rows(admin_client, params, expected):
    seed()
    response = admin_client.get(URL, params)
    assert response.status_code == 200, response.context["form"].errors
    assert _ids(response) == expected


def test_range_counts_back_from_now(admin_client):
    seed()
    recent = completion(dt.datetime.now(dt.UTC), 99)
    assert _ids(admin_client.get(URL, {"range": "1h"})) == [recent.id.int]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "SLOW DOWN"}, [6]),
        ({"q": "boom", "search_in": "error"}, [7]),
        ({"q": "rana_k2", "search_in": "key"}, [9, 6, 3]),
        ({"q": "rana_k", "search_in": "key"}, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),
        ({"q": str(uuid.UUID(int=4))}, [4]),
        ({"q": str(uuid.UUID(int=4)), "chain": "alpha"}, [4]),  # an id is exact: other filters do not apply
        ({"q": "nothing like it"}, []),
    ],
)
def test_search_by_request_id_key_prefix_and_provider_error(admin_client, params, expected):
    seed()
    assert _ids(admin_client.get(URL, params)) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "boom", "provider": "primary"}, [7]),  # the same attempt has the text
        ({"q": "boom", "provider": "backup"}, []),  # the backup's attempt has no error
        ({"q": "boom", "model": "m1"}, [7]),
        ({"q": "boom", "start": "2026-03-02T12:06:00+00:00"}, [7]),
        ({"q": "boom", "start": "2026-03-02T12:07:00+00:00"}, []),  # it started before the range
        ({"q": "500", "outcome": "success"}, [7]),  # a failed attempt of a request that succeeded
        ({"q": "slow", "chain": "alpha"}, []),
    ],
)
@pytest.mark.parametrize("listed", [2000, 0], ids=["matches-listed", "attempts-probed"])
def test_error_text_search_combines_with_the_filters(admin_client, monkeypatch, params, expected, listed):
    monkeypatch.setattr(query, "MATCHES_LISTED", listed)  # both ways of reading: same rows
    seed()
    response = admin_client.get(URL, params)
    assert response.status_code == 200, response.context["form"].errors
    assert _ids(response) == expected


def _kept(n: int, *messages: dict, answer: str = "") -> None:
    CompletionBody.objects.create(
        completion_id=uuid.UUID(int=n),
        created_at=T0,
        messages=orjson.dumps(list(messages)).decode(),
        prompt="\n\n".join(m["content"] for m in messages),
        answer=answer,
    )


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("invoice", [7, 3]),  # in a user turn, any case
        ("INVOICE 42", [3]),
        ('say "hi"', [7]),  # quotes, as typed
        ("brief", [7]),  # a system turn is searched too
        ("café", [5]),
        ("the answer text", []),  # answers are not searched, only the prompt
        ("role", []),  # nor the JSON's own keys
    ],
)
@pytest.mark.parametrize("listed", [2000, 0], ids=["matches-listed", "bodies-probed"])
def test_search_by_prompt_text_finds_kept_bodies(admin_client, monkeypatch, q, expected, listed):
    monkeypatch.setattr(query, "MATCHES_LISTED", listed)
    seed()
    _kept(3, {"role": "user", "content": "About invoice 42, please"}, answer="the answer text")
    _kept(7, {"role": "system", "content": "Be brief"}, {"role": "user", "content": 'Invoice: say "hi"'})
    _kept(5, {"role": "user", "content": "un café"})
    response = admin_client.get(URL, {"q": q, "search_in": "prompt"})
    assert response.status_code == 200, response.context["form"].errors
    assert _ids(response) == expected


def test_search_by_prompt_is_allowed_once_a_chain_keeps_bodies(admin_client):
    seed()
    FallbackChain.objects.filter(slug="alpha").update(body_logging="on")
    response = admin_client.get(URL, {"q": "hello", "search_in": "prompt"})
    assert response.status_code == 200 and _ids(response) == []


def test_search_by_prompt_says_it_needs_body_logging(admin_client):
    seed()
    response = admin_client.get(URL, {"q": "hello", "search_in": "prompt"})
    assert response.status_code == 400
    assert "needs body logging" in response.content.decode()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"chain": "no-such-chain"}, "chain"),
        ({"outcome": "exploded"}, "outcome"),
        ({"cost_above": "lots"}, "cost_above"),
        ({"latency_above": "-5"}, "latency_above"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-03-02T12:00", "end": "2026-03-02T11:00"}, "end"),
        ({"fallback": "maybe"}, "fallback"),
        ({"range": "forever"}, "range"),
        ({"older": "not-a-cursor"}, "older"),
        ({"newer": "1772452800000000_zz"}, "newer"),
        ({"older": "9" * 30 + "_" + "0" * 32}, "older"),
    ],
)
def test_bad_filters_give_form_errors_not_a_500(admin_client, params, field):
    response = admin_client.get(URL, params)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert 'role="alert"' in response.content.decode()


def test_cursor_pages_neither_skip_nor_repeat_across_equal_timestamps(db):
    seed()
    for n in range(11, 31):  # 20 more rows, all at T0: 24 rows share one timestamp
        completion(T0, n)
    seen, cursor = [], None
    while True:
        page = log_page(LogQuery(), older_than=cursor, size=7)
        seen += [row["id"].int for row in page.rows]
        if page.older is None:
            break
        cursor = page.older
    assert len(seen) == 30 and len(set(seen)) == 30
    assert seen == [10, 9, 8, 7, 6, 5, *range(30, 10, -1), 4, 3, 2, 1]


def test_newer_pages_walk_back_to_the_first(db):
    seed()
    first = log_page(LogQuery(), size=4)
    second = log_page(LogQuery(), older_than=first.older, size=4)
    third = log_page(LogQuery(), older_than=second.older, size=4)
    assert [r["id"].int for r in third.rows] == [2, 1] and third.older is None
    back = log_page(LogQuery(), newer_than=third.newer, size=4)
    assert back.rows == second.rows
    again = log_page(LogQuery(), newer_than=back.newer, size=4)
    assert again.rows == first.rows and again.newer is None


def test_older_and_newer_links_keep_the_filters(admin_client):
    seed()
    response = admin_client.get(URL, {"chain": "alpha"})
    page = response.context["page"]
    assert page.older is None and page.newer is None  # 5 rows: one page
    for n in range(11, 70):
        completion(T0, n, chain_id=response.context["form"]._chain_ids["alpha"])
    response = admin_client.get(URL, {"chain": "alpha"})
    older_url = response.context["older_url"]
    assert "chain=alpha" in older_url and "older=" in older_url
    nxt = admin_client.get(URL + older_url)
    assert nxt.status_code == 200 and "newer=" in nxt.context["newer_url"]
    assert not set(_ids(response)) & set(_ids(nxt))


def test_a_row_opens_its_completion_page(admin_client):
    rows = seed()["rows"]
    body = admin_client.get(URL).content.decode()
    assert f'href="{reverse("completions:detail", args=[rows[0].id])}"' in body


def test_cursor_round_trips():
    cursor = Cursor(T0, uuid.UUID(int=7))
    assert Cursor.parse(str(cursor)) == cursor


def test_the_completion_page_shows_the_capabilities_asked_for_and_links_back(admin_client):
    row = completion(T0, 1, needs="images,tools")
    body = admin_client.get(reverse("completions:detail", args=[row.id])).content.decode()
    assert "images,tools" in body and f'href="{URL}"' in body
