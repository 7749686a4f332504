"""Exports of the request log stream exactly the filtered rows, as CSV and as JSONL."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

from gateway.requestlog import query
from tests.gateway.request_log_seed import T0, completion, seed

pytestmark = pytest.mark.django_db


def _body(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def test_csv_streams_exactly_the_filtered_rows(admin_client):
    seed()
    response = admin_client.get(reverse("requests:export", args=["csv"]), {"chain": "alpha"})
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    assert [int(r["id"].replace("-", ""), 16) for r in rows] == [9, 7, 5, 3, 1]
    assert rows[0]["chain_slug"] == "alpha" and rows[0]["outcome"] == "success"
    assert rows[0]["cost_usd"] == "0.001" and rows[0]["created_at"].endswith("+00:00")


def test_jsonl_streams_exactly_the_filtered_rows(admin_client):
    data = seed()
    response = admin_client.get(reverse("requests:export", args=["jsonl"]), {"outcome": "failed"})
    assert response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in _body(response).splitlines()]
    assert [line["id"] for line in lines] == [str(data["failed"].id)]
    assert lines[0]["answered_provider"] is None and lines[0]["latency_ms"] == 900.0


def test_export_reads_keyset_pages_and_keeps_every_row(admin_client, monkeypatch):
    seed()
    for n in range(11, 40):
        completion(T0, n)  # many rows on one timestamp, across page edges
    monkeypatch.setattr(query, "EXPORT_PAGE_SIZE", 4)
    monkeypatch.setattr(query.log_rows, "__kwdefaults__", {"page_size": 4})
    lines = _body(admin_client.get(reverse("requests:export", args=["jsonl"]))).splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == 39 and len(set(ids)) == 39


def test_export_with_bad_filters_is_a_form_error(admin_client):
    response = admin_client.get(reverse("requests:export", args=["csv"]), {"cost_above": "x"})
    assert response.status_code == 400


def test_export_of_an_unknown_format_is_404(admin_client):
    assert admin_client.get(reverse("requests:export", args=["xml"])).status_code == 404
