"""/v1/batches with a gateway key, and the Batches pages (page and htmx fragment), tasks eager."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest

from batches.models import Batch
from gateway.services.keys import gateway_key_create
from tests.batches.conftest import csv_file

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def api_key(main_chain) -> str:
    return gateway_key_create(name="batch-tests")[1]


@pytest.fixture
async def api():
    from rana_site.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


async def test_a_batch_posted_as_multipart_runs_and_its_results_stream_back(api, api_key):
    auth = {"authorization": f"Bearer {api_key}"}
    files = {"file": ("p.csv", csv_file(5), "text/csv")}
    posted = await api.post(
        "/v1/batches", headers=auth, files=files, data={"model": "main", "concurrency": "2"}
    )
    assert posted.status_code == 200, posted.text
    body = posted.json()
    assert body["object"] == "batch" and body["counts"]["total"] == 5 and body["concurrency"] == 2
    status = (await api.get(f"/v1/batches/{body['id']}", headers=auth)).json()
    assert status["status"] == "done" and status["counts"]["done"] == 5  # eager: run on commit

    results = await api.get(f"/v1/batches/{body['id']}/results?format=csv", headers=auth)
    rows = list(csv.DictReader(io.StringIO(results.text)))
    assert results.headers["content-type"].startswith("text/csv")
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(5)]
    assert {r["outcome"] for r in rows} == {"done"} and all(r["answer"] and r["provider"] for r in rows)
    lines = (await api.get(f"/v1/batches/{body['id']}/results", headers=auth)).text.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [f"q{i}" for i in range(5)]
    assert await Batch.objects.filter(gateway_key_prefix=api_key[:13]).acount() == 1


async def test_a_json_batch_can_be_cancelled_and_other_keys_cannot_see_it(api, api_key, monkeypatch):
    monkeypatch.setattr("batches.services.create._enqueue", lambda batch_id: None)
    auth = {"authorization": f"Bearer {api_key}"}
    posted = await api.post("/v1/batches", headers=auth, json={"input": [{"prompt": "a"}, {"prompt": "b"}]})
    batch_id = posted.json()["id"]
    cancelled = await api.post(f"/v1/batches/{batch_id}/cancel", headers=auth)
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["counts"]["cancelled"] == 2
    other = (await gateway_key_create_async())[1]
    missing = await api.get(f"/v1/batches/{batch_id}", headers={"authorization": f"Bearer {other}"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "batch_not_found"


async def gateway_key_create_async():
    from asgiref.sync import sync_to_async

    return await sync_to_async(gateway_key_create)(name="other")


@pytest.mark.parametrize(
    ("payload", "status", "param", "message"),
    [
        ({"input": [{"prompt": ""}]}, 400, "file", "Line 1: give a non-empty 'prompt'"),
        ({"input": [{"prompt": "x"}], "concurrency": 99}, 400, "concurrency", "concurrency must be 1 to 16"),
        ({"input": [{"prompt": "x"}], "concurrency": "many"}, 400, "concurrency", "must be an integer"),
        ({"file": "question\nx\n", "format": "csv"}, 400, "file", "no 'prompt' column"),
        ({"nothing": 1}, 400, "input", "Give 'input'"),
        ({"input": [{"prompt": "x"}], "model": "nope"}, 404, "model", "does not exist"),
    ],
)
async def test_bad_batches_are_4xx_errors_in_openai_shape(api, api_key, payload, status, param, message):
    answer = await api.post("/v1/batches", headers={"authorization": f"Bearer {api_key}"}, json=payload)
    assert answer.status_code == status
    assert answer.json()["error"]["param"] == param and message in answer.json()["error"]["message"]


async def test_batches_need_a_key(api, main_chain):
    assert (await api.post("/v1/batches", json={"input": []})).status_code == 401
    assert (await api.get("/v1/batches")).status_code == 405


def test_the_page_uploads_a_file_and_shows_progress_as_page_and_fragment(admin_client, main_chain):
    page = admin_client.get("/batches/")
    assert (
        page.status_code == 200 and b'id="batch-upload"' in page.content and b">Batches</a>" in page.content
    )
    upload = io.BytesIO(csv_file(3))
    upload.name = "three.csv"
    posted = admin_client.post("/batches/", {"file": upload, "chain": "main", "concurrency": 2})
    assert posted.status_code == 302
    detail = admin_client.get(posted["Location"])
    assert b"100 %" in detail.content and b"<html" in detail.content
    fragment = admin_client.get(posted["Location"], headers={"HX-Request": "true"})
    assert (
        fragment.content.lstrip().startswith(b'<div id="batch-progress"') and b"<html" not in fragment.content
    )
    results = admin_client.get(posted["Location"] + "results.jsonl")
    assert len(b"".join(results.streaming_content).splitlines()) == 3


def test_a_bad_upload_is_a_form_error_not_a_500(admin_client, main_chain):
    upload = io.BytesIO(b"question\nx\n")
    upload.name = "bad.csv"
    answer = admin_client.post("/batches/", {"file": upload, "chain": "main", "concurrency": 4})
    assert answer.status_code == 400 and b"no &#x27;prompt&#x27; column" in answer.content
    assert not Batch.objects.exists()


def test_the_pages_need_a_login(client, main_chain):
    assert client.get("/batches/").status_code == 302
