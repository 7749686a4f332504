"""Every API answer leads to its completion's timeline in the UI."""

from __future__ import annotations

import pytest
from django.test import AsyncClient

from tests.fakes import Fault

from .conftest import HELLO, auth

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_request_id_opens_the_timeline_with_every_attempt(api, api_key, upstream, admin_user):
    upstream.script("openai", [Fault.error("server_error")], model="primary")
    answer = await api.post("/v1/chat/completions", json={"messages": HELLO}, headers=auth(api_key))
    rana = answer.json()["rana"]
    assert rana["timeline_url"] == f"/completions/{rana['request_id']}/"
    browser = AsyncClient()
    await browser.aforce_login(admin_user)
    found = await browser.get("/completions/", {"id": answer.headers["x-rana-request-id"]})
    assert found.status_code == 302 and found["location"] == rana["timeline_url"]
    page = (await browser.get(rana["timeline_url"])).content.decode()
    assert api_key[:13] in page and 'data-outcome="server_error"' in page and 'data-outcome="success"' in page


async def test_the_timeline_needs_a_login_and_a_known_id(api_key, admin_user):
    browser = AsyncClient()
    anonymous = await browser.get("/completions/01a2167a-0000-7000-8000-000000000000/")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["location"]
    await browser.aforce_login(admin_user)
    assert (await browser.get("/completions/01a2167a-0000-7000-8000-000000000000/")).status_code == 404
    bad = await browser.get("/completions/", {"id": "nope"})
    assert bad.status_code == 200 and "not a request id" in bad.content.decode()


async def test_the_timeline_shows_the_kept_messages_and_answer_masked(
    api, api_key, upstream, admin_user, main_chain
):
    main_chain.body_logging = "on"
    await main_chain.asave()
    upstream.script("openai", [Fault.error("server_error")], model="primary")
    secret = "sk-proj-" + "Q" * 30 + "tail"
    messages = [
        {"role": "system", "content": "Answer <briefly>."},
        {"role": "user", "content": f"mine is {secret}"},
    ]
    answer = await api.post(
        "/v1/chat/completions", json={"messages": messages, "temperature": 0.3}, headers=auth(api_key)
    )
    text = answer.json()["choices"][0]["message"]["content"]
    browser = AsyncClient()
    await browser.aforce_login(admin_user)
    page = (await browser.get(answer.json()["rana"]["timeline_url"])).content.decode()
    assert "data-body" in page and "Answer &lt;briefly&gt;." in page  # escaped, as text
    assert secret not in page and "mine is ••••tail" in page
    assert "data-body-answer>" + text in page
    assert "<code>temperature=0.3</code>" in page


async def test_the_timeline_says_when_no_body_is_kept(api, api_key, upstream, admin_user):
    answer = await api.post("/v1/chat/completions", json={"messages": HELLO}, headers=auth(api_key))
    browser = AsyncClient()
    await browser.aforce_login(admin_user)
    page = (await browser.get(answer.json()["rana"]["timeline_url"])).content.decode()
    assert "data-no-body" in page and "body logging is off for this chain" in page
    assert "none set: the model's defaults" in page
