"""The fake upstream itself: scripting order, defaults, recording, keep-alive, sync use."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes import FakeUpstream, Fault

from .adapter_calls import call, failure


def chat(fake: FakeUpstream, model: str = "m", **extra: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    with httpx.Client(trust_env=False, timeout=5) as client:
        return client.post(f"{fake.base_url_for('openai')}/chat/completions", json=body)


def test_plain_sync_client_gets_a_realistic_openai_completion(fake_upstream):
    answer = chat(fake_upstream, "gpt-4o-mini").json()
    assert answer["object"] == "chat.completion" and answer["model"] == "gpt-4o-mini"
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello from the fake upstream.",
        "refusal": None,
        "annotations": [],
    }
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_model_script_wins_over_protocol_script_and_default(fake_upstream):
    fake_upstream.set_default(Fault.error("server_error"))
    fake_upstream.script("openai", [Fault.error("rate_limited")])
    fake_upstream.script(model="special", faults=[Fault.error("auth")])
    assert chat(fake_upstream, "special").status_code == 401
    assert chat(fake_upstream, "special").status_code == 429
    assert chat(fake_upstream, "special").status_code == 500
    assert fake_upstream.pending() == 0


def test_default_can_be_a_function_of_the_request(fake_upstream):
    fake_upstream.set_default(lambda req: Fault.error("overloaded") if req.model == "busy" else Fault.ok())
    assert chat(fake_upstream, "busy").status_code == 503
    assert chat(fake_upstream, "idle").status_code == 200


def test_every_request_is_recorded_with_its_fault(fake_upstream):
    fake_upstream.script("openai", [Fault.error("rate_limited", retry_after="2")])
    chat(fake_upstream, "a", temperature=0.5)
    chat(fake_upstream, "b")
    first, second = fake_upstream.requests
    assert (first.protocol, first.model, first.json["temperature"]) == ("openai", "a", 0.5)
    assert first.fault.error_name == "rate_limited" and second.fault.kind == "ok"
    assert fake_upstream.requests_for("anthropic") == []


def test_sequential_requests_reuse_one_keep_alive_connection(fake_upstream):
    before = fake_upstream.connections_opened
    with httpx.Client(base_url=fake_upstream.base_url, trust_env=False) as client:
        for _ in range(5):
            assert client.post("/v1/messages", json={"model": "c", "messages": []}).status_code == 200
    assert fake_upstream.connections_opened - before == 1


@pytest.mark.parametrize(
    ("headers", "path", "key"),
    [
        ({}, "/v1/models", "data"),
        ({"anthropic-version": "2023-06-01"}, "/v1/models", "has_more"),
        ({}, "/v1beta/models", "models"),
    ],
    ids=["openai", "anthropic", "gemini"],
)
def test_model_lists_are_served(fake_upstream, headers, path, key):
    response = httpx.get(fake_upstream.base_url + path, headers=headers, timeout=5, trust_env=False)
    assert response.status_code == 200 and key in response.json()


def test_unknown_path_is_a_404(fake_upstream):
    response = httpx.post(fake_upstream.base_url + "/v2/nothing", json={}, timeout=5, trust_env=False)
    assert response.status_code == 404


def test_a_second_server_can_run_beside_the_first():
    with FakeUpstream() as other:
        assert chat(other).status_code == 200
    with pytest.raises(httpx.ConnectError):
        chat(other)


async def test_scripts_apply_across_adapters_in_order(fake_upstream, http_client, make_request):
    fake_upstream.script(None, [Fault.error("overloaded"), Fault.ok("second")])
    assert (await failure(make_request("anthropic"), http_client, stream=False)).status == 529
    assert (await call(make_request("gemini"), http_client, stream=False)).text == "second"
