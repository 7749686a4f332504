"""RANA's transport relies on two private aiohttp attributes (providers/aiohttp_internals.py
says why): these tests fail when an aiohttp upgrade renames or drops them."""

from __future__ import annotations

import aiohttp
import pytest

from providers.aiohttp_internals import no_stale_connection_retry, session_abandon


async def test_the_stale_connection_retry_switch_exists_and_turns_off():
    async with aiohttp.ClientSession() as session:
        assert session._retry_connection is True  # aiohttp's default: one silent retry
        no_stale_connection_retry(session)
        assert session._retry_connection is False


async def test_abandoning_a_session_detaches_its_connector():
    session = aiohttp.ClientSession()
    connector = session.connector
    assert isinstance(connector._conns, dict) and connector._closed is False
    session_abandon(session)
    assert session.connector is None and connector._closed is True and not connector._conns


def test_a_missing_switch_is_an_error_not_a_silent_retry():
    class Renamed:
        pass

    with pytest.raises(RuntimeError, match="_retry_connection"):
        no_stale_connection_retry(Renamed())  # type: ignore[arg-type]
