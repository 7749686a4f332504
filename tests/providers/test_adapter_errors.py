"""Shared failure mapping: transport errors, status defaults, key masking."""

from __future__ import annotations

import httpx
import pytest

from providers.adapters.errors import (
    MAX_MESSAGE_CHARS,
    check_api_key,
    class_for_status,
    from_transport,
    provider_error,
)
from providers.adapters.registry import get_adapter
from providers.engine.types import FailureClass, ProviderError

KEY = "sk-proj-SECRETKEY0123456789abcdef"
REQUEST = httpx.Request("POST", "https://api.example.com/v1/chat/completions", headers={"authorization": KEY})


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectTimeout("connect"), FailureClass.TIMEOUT),
        (httpx.ReadTimeout("read"), FailureClass.TIMEOUT),
        (httpx.WriteTimeout("write"), FailureClass.TIMEOUT),
        (httpx.PoolTimeout("pool"), FailureClass.TIMEOUT),
        (httpx.ConnectError("[Errno 111] Connection refused"), FailureClass.CONNECTION_ERROR),
        (httpx.ReadError("[Errno 104] Connection reset by peer"), FailureClass.CONNECTION_ERROR),
        (httpx.WriteError("broken pipe"), FailureClass.CONNECTION_ERROR),
        (httpx.RemoteProtocolError("incomplete chunked read"), FailureClass.CONNECTION_ERROR),
        (httpx.LocalProtocolError("bad header"), FailureClass.CONNECTION_ERROR),
        (httpx.UnsupportedProtocol("ftp"), FailureClass.CONNECTION_ERROR),
        (httpx.DecodingError("bad gzip"), FailureClass.BAD_RESPONSE),
    ],
)
def test_transport_errors_map_to_failure_classes(exc: httpx.HTTPError, expected: FailureClass) -> None:
    exc.request = REQUEST
    error = from_transport(exc, api_key=KEY)
    assert error.failure_class == expected
    assert error.status is None


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, FailureClass.INVALID_REQUEST),
        (401, FailureClass.AUTH_ERROR),
        (402, FailureClass.QUOTA_EXHAUSTED),
        (403, FailureClass.AUTH_ERROR),
        (404, FailureClass.INVALID_REQUEST),
        (408, FailureClass.TIMEOUT),
        (409, FailureClass.SERVER_ERROR),
        (413, FailureClass.INVALID_REQUEST),
        (422, FailureClass.INVALID_REQUEST),
        (429, FailureClass.RATE_LIMITED),
        (500, FailureClass.SERVER_ERROR),
        (503, FailureClass.SERVER_ERROR),
        (529, FailureClass.RATE_LIMITED),
        (302, FailureClass.BAD_RESPONSE),
    ],
)
def test_status_defaults(status: int, expected: FailureClass) -> None:
    assert class_for_status(status) == expected


def test_transport_error_message_masks_a_key_it_happens_to_contain() -> None:
    error = from_transport(httpx.ConnectError(f"cannot reach https://x/?key={KEY}"), api_key=KEY)
    assert KEY not in str(error) and KEY not in repr(error) and KEY not in error.message


def test_provider_error_masks_the_key_and_key_shaped_strings_and_bounds_length() -> None:
    other = "AIzaSyOTHERKEY0123456789abcdefghijk"
    error = provider_error(FailureClass.AUTH_ERROR, f"bad {KEY} and {other} " + "x" * 2000, api_key=KEY)
    assert KEY not in str(error) and other not in str(error)
    assert "••••cdef" in error.message
    assert len(error.message) <= MAX_MESSAGE_CHARS


@pytest.mark.parametrize("key", ["sk-with space", "sk-new\nline", "sk-ключ"])
def test_a_key_that_cannot_be_sent_in_a_header_is_an_auth_error_without_the_key(key: str) -> None:
    with pytest.raises(ProviderError) as caught:
        check_api_key(key)
    assert caught.value.failure_class == FailureClass.AUTH_ERROR
    assert key not in str(caught.value)


@pytest.mark.parametrize("kind", ["openai", "openai_compatible", "anthropic", "gemini", "simulated"])
def test_registry_has_an_adapter_for_every_kind(kind: str) -> None:
    assert get_adapter(kind).kind == kind


def test_registry_rejects_an_unknown_kind() -> None:
    with pytest.raises(LookupError):
        get_adapter("carrier-pigeon")
