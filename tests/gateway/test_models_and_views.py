"""GET /v1/models, and the same API through Django's views (WSGI, runserver, test client)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from gateway.services.keys import gateway_key_create

from .conftest import HELLO, auth, sse_data

pytestmark = pytest.mark.django_db(transaction=True)


async def test_models_lists_every_chain_for_an_unrestricted_key(api, api_key):
    response = await api.get("/v1/models", headers=auth(api_key))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in body["data"]] == [
        ("main", "model", "rana"),
        ("solo", "model", "rana"),
    ]


async def test_models_lists_only_the_chains_a_key_may_use(api, main_chain, solo_chain):
    _, key = await sync_to_async(gateway_key_create)(name="solo only", chains=[solo_chain])
    response = await api.get("/v1/models", headers=auth(key))
    assert [m["id"] for m in response.json()["data"]] == ["solo"]
    assert (await api.get("/v1/models/solo", headers=auth(key))).json()["id"] == "solo"
    assert (await api.get("/v1/models/main", headers=auth(key))).status_code == 404


async def test_models_needs_a_key(api, api_key):
    assert (await api.get("/v1/models")).status_code == 401


@pytest.fixture
async def django_client() -> AsyncClient:
    return AsyncClient(enforce_csrf_checks=True)


async def test_django_views_answer_like_the_lean_path(django_client, api_key):
    response = await django_client.post(
        "/v1/chat/completions", {"messages": HELLO}, content_type="application/json", headers=auth(api_key)
    )
    assert response.status_code == 200, response.content
    body = json.loads(response.content)
    assert body["object"] == "chat.completion" and body["rana"]["chain"] == "main"
    assert response["x-rana-provider"] == "fake" and response["x-rana-fallback"] == "false"


async def test_django_views_stream(django_client, api_key):
    response = await django_client.post(
        "/v1/chat/completions",
        {"messages": HELLO, "stream": True},
        content_type="application/json",
        headers=auth(api_key),
    )
    body = b"".join([chunk async for chunk in response.streaming_content])
    assert response["content-type"].startswith("text/event-stream") and sse_data(body)[-1] == "[DONE]"


async def test_a_logged_in_browser_session_cannot_spend(django_client, api_key, django_user_model):
    user = await django_user_model.objects.acreate_user("ada", password="correct-horse-9")
    await django_client.aforce_login(user)
    response = await django_client.post(
        "/v1/chat/completions", {"messages": HELLO}, content_type="application/json"
    )
    assert response.status_code == 401
    assert json.loads(response.content)["error"]["code"] == "invalid_api_key"


async def test_django_views_answer_unknown_api_paths_with_an_openai_404(django_client, api_key):
    response = await django_client.get("/v1/files", headers=auth(api_key))
    assert response.status_code == 404 and json.loads(response.content)["error"]["code"] == "unknown_url"


async def test_django_views_refuse_a_large_body_with_413(django_client, api_key, settings):
    settings.RANA_API_MAX_BODY_BYTES = 100
    big = {"messages": [{"role": "user", "content": "x" * 500}]}
    response = await django_client.post(
        "/v1/chat/completions", big, content_type="application/json", headers=auth(api_key)
    )
    assert response.status_code == 413
