"""The official `openai` package against a live RANA (granian, ASGI) on 127.0.0.1.

The server runs as scripts/run serves it, on a fresh SQLite file seeded by tests.gateway.seed,
in front of a fake upstream running in this process. Chains: main (primary, then backup),
fallback (broken: always 503, then backup), solo, other, slow (1 s deadline on a hang).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakes import FakeUpstream, Fault

from .live import LiveGateway, start_gateway

HELLO = [{"role": "user", "content": "hello"}]
LIVE_STORED_KEY = "sk-local-LIVEKEY0123456789abcdef"  # tests.gateway.seed


def _defaults(fake: FakeUpstream) -> None:
    fake.reset()
    fake.set_default(Fault.error("server_error"), model="broken")
    fake.set_default(Fault.hang(), model="hang")


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[LiveGateway, FakeUpstream]]:
    with FakeUpstream(models=("primary", "backup")) as fake:
        _defaults(fake)
        env = {"RANA_BREAKER_ENABLED": "0", "RANA_API_MAX_BODY_BYTES": "65536"}
        gateway = start_gateway(
            upstream_url=fake.base_url, workdir=Path(tmp_path_factory.mktemp("live")), extra_env=env
        )
        try:
            yield gateway, fake
        finally:
            gateway.stop()


@pytest.fixture
def gateway(live) -> LiveGateway:
    return live[0]


@pytest.fixture
def fake(live) -> Iterator[FakeUpstream]:
    _defaults(live[1])
    yield live[1]
    assert not live[1].errors, live[1].errors


def client(gateway: LiveGateway, key: str = "full", **options) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=gateway.base_url, api_key=gateway.keys.get(key, key), **options)


def calls_to(fake: FakeUpstream, model: str) -> int:
    return sum(1 for r in fake.requests if r.model == model)


def test_a_completion_with_what_happened_in_headers_and_body(gateway, fake):
    raw = client(gateway).chat.completions.with_raw_response.create(model="main", messages=HELLO)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.usage.total_tokens == 28 and completion.model == "primary"
    assert raw.headers["x-rana-provider"] == "fake" and raw.headers["x-rana-model"] == "primary"
    assert raw.headers["x-rana-attempts"] == "1" and raw.headers["x-rana-fallback"] == "false"
    assert float(raw.headers["x-rana-cost-usd"]) > 0
    rana = completion.model_extra["rana"]
    assert rana["request_id"] == raw.headers["x-rana-request-id"] == completion._request_id
    rows = gateway.poll(
        "select gateway_key_prefix, source, outcome from providers_completion where id = ?",
        (rana["request_id"].replace("-", ""),),
    )
    assert rows == [(gateway.keys["full"][:13], "api", "success")]


def test_a_stream_with_usage_and_the_rana_object_on_its_final_chunk(gateway, fake):
    chunks = list(
        client(gateway).chat.completions.create(
            model="main", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream."
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7
    assert chunks[-1].model_extra["rana"]["attempts"][0]["outcome"] == "success"


def test_a_fallback_shows_in_headers_and_the_rana_object(gateway, fake):
    raw = client(gateway).chat.completions.with_raw_response.create(model="fallback", messages=HELLO)
    assert raw.headers["x-rana-fallback"] == "true" and raw.headers["x-rana-attempts"] == "2"
    attempts = raw.parse().model_extra["rana"]["attempts"]
    assert [(a["model"], a["outcome"]) for a in attempts] == [
        ("broken", "server_error"),
        ("backup", "success"),
    ]


def test_a_streamed_fallback_shows_in_headers(gateway, fake):
    with client(gateway).chat.completions.with_streaming_response.create(
        model="fallback", messages=HELLO, stream=True
    ) as response:
        assert response.headers["x-rana-fallback"] == "true" and response.headers["x-rana-model"] == "backup"
        chunks = list(response.parse())
    assert chunks[-1].model_extra["rana"]["fallback"] is True


@pytest.mark.parametrize(
    ("key", "request_args", "error", "status"),
    [
        (
            "full",
            {"model": "main", "response_format": {"type": "xml"}},
            openai.BadRequestError,
            400,
        ),
        ("rana_" + "x" * 40, {"model": "main"}, openai.AuthenticationError, 401),
        ("limited", {"model": "other"}, openai.PermissionDeniedError, 403),
        ("full", {"model": "gpt-9"}, openai.NotFoundError, 404),
        ("revoked", {"model": "main"}, openai.AuthenticationError, 401),
        ("expired", {"model": "main"}, openai.AuthenticationError, 401),
        ("budget", {"model": "main"}, openai.RateLimitError, 429),
    ],
)
def test_errors_have_the_status_and_a_body_the_sdk_parses(gateway, fake, key, request_args, error, status):
    with pytest.raises(error) as info:
        client(gateway, key).chat.completions.create(messages=HELLO, **request_args)
    assert info.value.status_code == status
    assert info.value.body["message"] and info.value.body["type"]  # the SDK's parsed `error` object


def test_a_body_too_large_is_413(gateway, fake):
    big = [{"role": "user", "content": "x" * 70_000}]
    with pytest.raises(openai.APIStatusError) as info:
        client(gateway).chat.completions.create(model="main", messages=big)
    assert info.value.status_code == 413 and info.value.body["code"] == "request_too_large"


def test_over_the_rate_limit_is_429_with_retry_after(gateway, fake):
    rpm = client(gateway, "rpm")
    for _ in range(2):
        rpm.chat.completions.create(model="main", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as info:
        rpm.chat.completions.create(model="main", messages=HELLO)
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 60


def test_all_failed_is_502_with_attempts_listed_and_keys_masked(gateway, fake):
    # The provider echoes the key it got. (The auth error opens `solo`'s circuit: no other test uses it.)
    fake.script("openai", [Fault.error("auth")], model="solo")
    with pytest.raises(openai.InternalServerError) as info:
        client(gateway).chat.completions.create(model="solo", messages=HELLO)
    assert info.value.status_code == 502 and info.value.body["code"] == "auth_error"
    assert LIVE_STORED_KEY not in info.value.response.text
    attempts = info.value.response.json()["rana"]["attempts"]
    assert [(a["model"], a["outcome"], a["http_status"]) for a in attempts] == [("solo", "auth_error", 401)]


def test_the_deadline_is_504(gateway, fake):
    with pytest.raises(openai.InternalServerError) as info:
        client(gateway).chat.completions.create(model="slow", messages=HELLO)
    assert info.value.status_code == 504 and info.value.body["code"] == "deadline_exceeded"


def test_the_sdks_own_retries_are_not_multiplied_by_rana(gateway, fake):
    """RANA has retried and fallen back already: a 502 says x-should-retry: false, so even
    the SDK's default max_retries=2 makes exactly one request, and one upstream call."""
    fake.set_default(Fault.error("server_error"), model="other")
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError):
        client(gateway, max_retries=2).chat.completions.create(model="other", messages=HELLO)
    assert calls_to(fake, "other") == 1 and time.monotonic() - started < 1.0


def test_an_error_after_the_first_token_arrives_in_band(gateway, fake):
    fake.script("openai", [Fault.truncated_stream(after_chunks=2)], model="primary")
    stream = client(gateway).chat.completions.create(model="main", messages=HELLO, stream=True)
    texts = []
    with pytest.raises(openai.APIError, match="stream interrupted"):
        for chunk in stream:
            texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts) and calls_to(fake, "backup") == 0


def test_a_client_that_leaves_mid_stream_cancels_the_upstream(gateway, fake):
    fake.script("openai", [Fault.stalled_stream(after_chunks=2)], model="primary")
    stream = client(gateway).chat.completions.create(model="main", messages=HELLO, stream=True)
    first = next(iter(stream))
    request_id = stream.response.headers["x-rana-request-id"]
    stream.close()
    assert first.id and fake.last_request.disconnected.wait(3.0)
    rows = gateway.poll(
        "select outcome from providers_completion where id = ? and outcome = 'cancelled'",
        (request_id.replace("-", ""),),
    )
    assert rows == [("cancelled",)]


def test_a_session_cookie_alone_gets_401(gateway, fake):
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "main", "messages": HELLO},
        headers={"cookie": "sessionid=anything; csrftoken=x"},
    )
    assert response.status_code == 401 and fake.requests == []


def test_models_lists_the_chains_this_key_may_use(gateway, fake):
    assert [m.id for m in client(gateway, "limited").models.list()] == ["main"]
    listed = {m.id for m in client(gateway).models.list()}
    assert listed == {"main", "fallback", "solo", "other", "slow", "tools"}


async def test_the_async_sdk_works_too(gateway, fake):
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=gateway.keys["full"], max_retries=0
    ) as sdk:
        completion = await sdk.chat.completions.create(model="main", messages=HELLO)
        stream = await sdk.chat.completions.create(model="main", messages=HELLO, stream=True)
        chunks = [chunk async for chunk in stream]
    assert completion.choices[0].message.content and chunks[-1].choices[0].finish_reason == "stop"


# --- tools and structured outputs, as an application's SDK code does them ------------------
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_a_tool_calling_loop_through_a_fallback(gateway, fake):
    """Call, tool result, final answer: the first step of `fallback` always fails (503)."""
    from tests.fakes import FakeToolCall

    fake.script(
        "openai", [Fault.tool_calls([FakeToolCall("get_weather", {"city": "Paris"})])], model="backup"
    )
    fake.script("openai", [Fault.ok("It is 18 °C in Paris.")], model="backup")
    sdk = client(gateway)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.chat.completions.create(model="fallback", messages=messages, tools=[WEATHER_TOOL])
    [call] = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert first.model_extra["rana"]["fallback"] is True
    messages += [first.choices[0].message.model_dump(exclude_none=True)]
    messages += [{"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'}]
    final = sdk.chat.completions.create(model="fallback", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "It is 18 °C in Paris."
    sent = [r.json for r in fake.requests if r.model == "backup"][-1]["messages"]
    assert sent[-1] == {"role": "tool", "content": '{"temp_c": 18}', "tool_call_id": call.id}


def test_parse_with_a_pydantic_model_gives_the_parsed_object(gateway, fake):
    from pydantic import BaseModel

    class Weather(BaseModel):
        city: str
        temp_c: int

    fake.script("openai", [Fault.json({"city": "Paris", "temp_c": 18})], model="backup")
    completion = client(gateway).chat.completions.parse(
        model="fallback", messages=[{"role": "user", "content": "Weather?"}], response_format=Weather
    )
    assert completion.choices[0].message.parsed == Weather(city="Paris", temp_c=18)
    sent = [r.json for r in fake.requests if r.model == "backup"][-1]
    assert sent["response_format"]["type"] == "json_schema"


def test_the_sdk_stream_helper_reassembles_streamed_tool_calls(gateway, fake):
    from tests.fakes import FakeToolCall

    calls = [FakeToolCall("get_weather", {"city": "Paris"}), FakeToolCall("get_weather", {"city": "Lyon"})]
    fake.script("openai", [Fault.tool_calls(calls, arg_pieces=5)], model="backup")
    with client(gateway).chat.completions.stream(
        model="fallback", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    got = [(c.function.name, c.function.arguments) for c in final.choices[0].message.tool_calls]
    assert got == [("get_weather", c.arguments) for c in calls]
    assert final.choices[0].finish_reason == "tool_calls"


CLAUDE_CHAIN = """
from providers.models import ChainStep, FallbackChain, Provider
fake = Provider.objects.get(name="fake")
claude = Provider(name="claude", kind="anthropic", base_url={base!r})
claude.set_api_key("sk-ant-" + "k" * 30)
claude.save()
chain = FallbackChain.objects.create(name="To Claude", slug="to-claude", default_retries=0)
ChainStep.objects.create(chain=chain, position=0, provider=fake, model="broken")
ChainStep.objects.create(chain=chain, position=1, provider=claude, model="claude-x")
"""


@pytest.fixture(scope="module")
def to_claude(live) -> str:
    gateway, fake = live
    done = gateway.manage("shell", "-c", CLAUDE_CHAIN.format(base=fake.base_url_for("anthropic")))
    assert done.returncode == 0, done.stderr
    return "to-claude"


def test_a_tool_calling_loop_falls_back_from_openai_to_anthropic(gateway, fake, to_claude):
    """The OpenAI-kind step fails (503); the Anthropic step answers the same SDK code."""
    from tests.fakes import FakeToolCall

    fake.script("anthropic", [Fault.tool_calls([FakeToolCall("get_weather", {"city": "Paris"})])])
    fake.script("anthropic", [Fault.ok("It is 18 °C in Paris.")])
    sdk = client(gateway)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.chat.completions.create(model=to_claude, messages=messages, tools=[WEATHER_TOOL])
    [call] = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and first.model_extra["rana"]["fallback"] is True
    messages += [first.choices[0].message.model_dump(exclude_none=True)]
    messages += [{"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'}]
    final = sdk.chat.completions.create(model=to_claude, messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "It is 18 °C in Paris."
    sent = [r.json for r in fake.requests if r.path == "/v1/messages"][-1]["messages"]
    assert sent[-1]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": call.id,
        "content": '{"temp_c": 18}',
    }


THREE_KINDS_CHAIN = """
from providers.models import ChainStep, FallbackChain, Provider
fake = Provider.objects.get(name="fake")
claude = Provider(name="claude-3k", kind="anthropic", base_url={anthropic!r})
claude.set_api_key("sk-ant-" + "k" * 30)
claude.save()
gemini = Provider(name="gemini-3k", kind="gemini", base_url={gemini!r})
gemini.set_api_key("AIza" + "g" * 35)
gemini.save()
chain = FallbackChain.objects.create(name="Three kinds", slug="three-kinds", default_retries=0)
ChainStep.objects.create(chain=chain, position=0, provider=fake, model="broken")
ChainStep.objects.create(chain=chain, position=1, provider=claude, model="claude-broken")
ChainStep.objects.create(chain=chain, position=2, provider=gemini, model="gemini-x")
"""


@pytest.fixture(scope="module")
def three_kinds(live) -> str:
    """OpenAI-kind (always 503) -> Anthropic-kind (always overloaded) -> Gemini-kind."""
    gateway, fake = live
    script = THREE_KINDS_CHAIN.format(
        anthropic=fake.base_url_for("anthropic"), gemini=fake.base_url_for("gemini")
    )
    done = gateway.manage("shell", "-c", script)
    assert done.returncode == 0, done.stderr
    return "three-kinds"


@pytest.fixture
def first_two_fail(fake):
    fake.set_default(Fault.error("overloaded"), model="claude-broken")
    return fake


def outcomes(completion) -> list[tuple[str, str]]:
    return [(a["model"], a["outcome"]) for a in completion.model_extra["rana"]["attempts"]]


def tool_loop(sdk: openai.OpenAI, chain: str) -> tuple[object, object]:
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.chat.completions.create(model=chain, messages=messages, tools=[WEATHER_TOOL])
    [call] = first.choices[0].message.tool_calls
    messages += [first.choices[0].message.model_dump(exclude_none=True)]
    messages += [{"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'}]
    final = sdk.chat.completions.create(model=chain, messages=messages, tools=[WEATHER_TOOL])
    return first, final


def test_a_tool_loop_through_openai_anthropic_gemini_gives_the_openai_shape(
    gateway, first_two_fail, three_kinds
):
    from tests.fakes import FakeToolCall

    fake = first_two_fail
    call = FakeToolCall("get_weather", {"city": "Paris"})
    fake.script("openai", [Fault.tool_calls([call]), Fault.ok("It is 18 °C in Paris.")], model="primary")
    fake.script("gemini", [Fault.tool_calls([call]), Fault.ok("It is 18 °C in Paris.")], model="gemini-x")
    sdk = client(gateway)
    straight_first, straight_final = tool_loop(sdk, "main")
    first, final = tool_loop(sdk, three_kinds)
    assert outcomes(first) == [
        ("broken", "server_error"),
        ("claude-broken", "rate_limited"),
        ("gemini-x", "success"),
    ]
    [got], [expected] = first.choices[0].message.tool_calls, straight_first.choices[0].message.tool_calls
    assert (got.type, got.function.name) == (expected.type, expected.function.name)
    assert json.loads(got.function.arguments) == json.loads(expected.function.arguments)
    assert got.id  # generated by RANA for Gemini, and mapped back below
    assert first.choices[0].finish_reason == straight_first.choices[0].finish_reason == "tool_calls"
    assert final.choices[0].message.content == straight_final.choices[0].message.content
    sent = [r.json for r in fake.requests if r.protocol == "gemini"][-1]["contents"]
    response_part = sent[-1]["parts"][0]["functionResponse"]
    assert response_part["name"] == "get_weather"


def test_parse_through_openai_anthropic_gemini_gives_the_same_parsed_object(
    gateway, first_two_fail, three_kinds
):
    from pydantic import BaseModel

    class Weather(BaseModel):
        city: str
        temp_c: int

    fake = first_two_fail
    fake.script("openai", [Fault.json({"city": "Paris", "temp_c": 18})], model="primary")
    fake.script("gemini", [Fault.json({"city": "Paris", "temp_c": 18})], model="gemini-x")
    sdk = client(gateway)
    ask = [{"role": "user", "content": "Weather?"}]
    straight = sdk.chat.completions.parse(model="main", messages=ask, response_format=Weather)
    through = sdk.chat.completions.parse(model=three_kinds, messages=ask, response_format=Weather)
    assert (
        through.choices[0].message.parsed
        == straight.choices[0].message.parsed
        == Weather(city="Paris", temp_c=18)
    )
    sent = [r.json for r in fake.requests if r.protocol == "gemini"][-1]["generationConfig"]
    assert sent["responseMimeType"] == "application/json" and "responseSchema" in sent


def test_streamed_tool_calls_through_openai_anthropic_gemini_reassemble_in_the_sdk(
    gateway, first_two_fail, three_kinds
):
    from tests.fakes import FakeToolCall

    fake = first_two_fail
    calls = [FakeToolCall("get_weather", {"city": "Paris"}), FakeToolCall("get_weather", {"city": "Lyon"})]
    fake.script("gemini", [Fault.tool_calls(calls)], model="gemini-x")
    with client(gateway).chat.completions.stream(
        model=three_kinds, messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    got = [(c.function.name, json.loads(c.function.arguments)) for c in final.choices[0].message.tool_calls]
    assert got == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Lyon"})]
    assert final.choices[0].finish_reason == "tool_calls"
    assert len({c.id for c in final.choices[0].message.tool_calls}) == 2


def test_parse_gives_the_refusal_when_the_model_declines(gateway, fake):
    from pydantic import BaseModel

    class Weather(BaseModel):
        city: str

    fake.script("openai", [Fault.refused("I can't help with that.")], model="backup")
    completion = client(gateway).chat.completions.parse(
        model="fallback", messages=[{"role": "user", "content": "Weather?"}], response_format=Weather
    )
    message = completion.choices[0].message
    assert message.refusal == "I can't help with that." and message.parsed is None
