"""The two places where RANA's upstream transport needs aiohttp's private attributes.

aiohttp offers no public switch for either, and both matter to operators:

- ``ClientSession._retry_connection``: aiohttp silently sends a request again when a
  keep-alive connection turns out to be stale. RANA's engine owns the one retry loop (a
  hidden second try would double an upstream's bill and break attempt counting), so it is
  switched off.
- ``ClientSession._connector`` / ``BaseConnector._conns`` / ``BaseConnector._closed``: a
  session left behind with its event loop (a worker's loop ending, one loop per test) cannot
  be closed any more; abandoning it this way lets its sockets go with the loop instead of
  aiohttp logging "Unclosed client session" from its finalisers.

tests/providers/test_aiohttp_internals.py fails when an aiohttp upgrade renames them.
"""

from __future__ import annotations

import aiohttp

RETRY_FLAG = "_retry_connection"


def no_stale_connection_retry(session: aiohttp.ClientSession) -> None:
    if not hasattr(session, RETRY_FLAG):
        raise RuntimeError(f"aiohttp {aiohttp.__version__} has no ClientSession.{RETRY_FLAG}")
    setattr(session, RETRY_FLAG, False)


def session_abandon(session: aiohttp.ClientSession) -> None:
    """Forget a session whose loop is gone, without the finaliser's complaints."""
    connector = session.connector
    session._connector = None
    if connector is not None:
        connector._conns.clear()
        connector._closed = True
