"""Every chart's JSON carries the request log URL of each bar or point, and those URLs work."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboards.charts import CHARTS
from tests.dashboards.conftest import attempt, request_rows


@pytest.fixture
def recent(record, chain, two_providers):
    """Three requests in the last hours: one answered at once, one by fallback, one failed."""
    now = timezone.now()
    p2 = {"provider": "p2", "model": "m2", "step": 1}
    for hours, attempts, kwargs in [
        (1, [attempt(cost_usd=Decimal("0.125"), input_tokens=900, ttft_ms=120)], {"key": "rk_live"}),
        (2, [attempt(outcome="rate_limited"), attempt(**p2, cost_usd=Decimal("0.5"))], {}),
        (3, [attempt(outcome="server_error")], {"source": "playground"}),
    ]:
        record(request_rows(at=now - dt.timedelta(hours=hours), attempts=attempts, chain=chain,
                            providers=two_providers, **kwargs))  # fmt: skip
    return chain


def _follow(payload: dict, index: int, series: int | None) -> dict[str, str]:
    """What dashboards.js does on a click: the log URL, then the point's and series' filters."""
    log = payload["log"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(log["url"]).query).items()}
    params |= log["points"][index] | ({} if series is None else log["series"][series])
    return params


def _log_ids(client, params: dict[str, str]) -> list[str]:
    response = client.get(reverse("requests:list"), params)
    assert response.status_code == 200, response.context["form"].errors
    return [str(row["id"]) for row in response.context["page"].rows]


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_every_chart_carries_a_log_url_per_point_and_series(admin_client, recent, name):
    payload = admin_client.get(
        reverse("dashboards:chart", args=[name]), {"range": "24h", "chain": "main"}
    ).json()
    log = payload["log"]
    assert urlsplit(log["url"]).path == reverse("requests:list")
    assert parse_qs(urlsplit(log["url"]).query)["chain"] == ["main"]
    assert len(log["points"]) == len(payload["labels"])
    assert len(log["series"]) == len(payload["datasets"])
    for i in range(len(payload["labels"])):  # every link is a valid request log query
        assert admin_client.get(reverse("requests:list"), _follow(payload, i, 0)).status_code == 200


def test_a_time_slot_opens_that_slots_requests(admin_client, recent):
    payload = admin_client.get(reverse("dashboards:chart", args=["rates"]), {"range": "24h"}).json()
    slots = [i for i, v in enumerate(payload["datasets"][0]["data"]) if v is not None]
    found = [_log_ids(admin_client, _follow(payload, i, None)) for i in slots]
    assert sorted(len(ids) for ids in found) == [1, 1, 1]  # each request in exactly one slot
    fallback = [_log_ids(admin_client, _follow(payload, i, 1)) for i in slots]
    assert sum(len(ids) for ids in fallback) == 1  # the series "Fallback rate": fallback=yes


def test_a_provider_bar_opens_the_requests_that_tried_it(admin_client, recent):
    payload = admin_client.get(
        reverse("dashboards:chart", args=["attempts-by-provider"]), {"range": "24h"}
    ).json()
    by_provider = {
        label: len(_log_ids(admin_client, _follow(payload, i, None)))
        for i, label in enumerate(payload["labels"])
    }
    assert by_provider == {"p1": 3, "p2": 1}


def test_a_funnel_series_opens_its_outcome(admin_client, recent):
    payload = admin_client.get(reverse("dashboards:chart", args=["funnel"]), {"range": "24h"}).json()
    names = [d["label"] for d in payload["datasets"]]
    step2 = _follow(payload, 0, names.index("Step 2"))
    assert step2["chain"] == "main" and step2["fallback"] == "yes" and step2["outcome"] == "success"
    assert len(_log_ids(admin_client, step2)) == 1
    assert len(_log_ids(admin_client, _follow(payload, 0, names.index("Not answered")))) == 1


def test_dashboard_filters_become_absolute_times_in_the_log_url(admin_client, recent):
    start, end = "2026-03-01T10:00", "2026-03-01T12:00"
    params = {"range": "custom", "start": start, "end": end, "tz": "Europe/Paris"}
    payload = admin_client.get(reverse("dashboards:chart", args=["tokens"]), params).json()
    query = parse_qs(urlsplit(payload["log"]["url"]).query)
    assert query["start"] == ["2026-03-01T09:00:00+00:00"] and query["end"] == ["2026-03-01T11:00:00+00:00"]
    assert payload["log"]["points"][0]["start"] == "2026-03-01T10:00:00+01:00"
    assert urlencode({"start": query["start"][0]}) == "start=2026-03-01T09%3A00%3A00%2B00%3A00"
