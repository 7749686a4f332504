"""A database that is busy (locked by another writer) is a retryable condition, never a 500.

SQLite (the embedded default) runs in WAL mode with a busy timeout and immediate transactions,
so a writer waits up to RANA_SQLITE_BUSY_TIMEOUT_S for another one before it gives up with
"database is locked". PostgreSQL reports the same kind of condition as a lock timeout, a
deadlock or a serialization failure. `is_database_busy` recognises all of them;
`retry_when_busy` retries a write a few times, and the middleware answers whatever still
fails with 503 and Retry-After (HTML for pages, JSON for fragments and API clients).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from django.db import OperationalError, close_old_connections
from django.db.utils import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults

log = logging.getLogger("rana.db")

T = TypeVar("T")

RETRY_AFTER_S = 2
BUSY_MESSAGE = "The database is busy with other writes. Nothing was lost; please try again in a moment."

# PostgreSQL SQLSTATEs: lock_not_available, deadlock_detected, serialization_failure.
_PG_BUSY_STATES = {"55P03", "40P01", "40001"}
_SQLITE_BUSY_WORDS = ("database is locked", "database table is locked", "database is busy")


def is_database_busy(exc: BaseException) -> bool:
    """True for a lock or contention error that the same statement may pass on retry."""
    if not isinstance(exc, DatabaseError):
        return False
    cause = exc.__cause__ or exc
    if getattr(cause, "sqlstate", None) in _PG_BUSY_STATES:
        return True
    return isinstance(exc, OperationalError) and any(w in str(exc).lower() for w in _SQLITE_BUSY_WORDS)


def _pause_s(attempt: int) -> float:
    return min(0.05 * 2**attempt, 1.0)


def retry_when_busy(write: Callable[[], T], *, tries: int = 4) -> T:
    """Run a write; on a busy database run it again (up to `tries` in all), then re-raise."""
    for attempt in range(tries):
        try:
            return write()
        except DatabaseError as exc:
            if not is_database_busy(exc) or attempt == tries - 1:
                raise
            log.warning("database busy (try %d of %d): %s", attempt + 1, tries, exc)
            close_old_connections()
            time.sleep(_pause_s(attempt))
    raise AssertionError("unreachable")


async def aretry_when_busy(write: Callable[[], Awaitable[T]], *, tries: int = 4) -> T:
    """`retry_when_busy` for an async write (the ORM's a* methods)."""
    for attempt in range(tries):
        try:
            return await write()
        except DatabaseError as exc:
            if not is_database_busy(exc) or attempt == tries - 1:
                raise
            log.warning("database busy (try %d of %d): %s", attempt + 1, tries, exc)
            await asyncio.sleep(_pause_s(attempt))
    raise AssertionError("unreachable")


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path.startswith("/v1/") or ("json" in accept and "html" not in accept)


def busy_response(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After: a page, an htmx fragment or an OpenAI-shaped JSON error."""
    if _wants_json(request):
        error = {"message": BUSY_MESSAGE, "type": "server_error", "param": None, "code": "database_busy"}
        response: HttpResponse = JsonResponse({"error": error}, status=503)
    else:
        context = {"message": BUSY_MESSAGE, "fragment": bool(getattr(request, "htmx", False))}
        response = HttpResponse(render_to_string("site/database_busy.html", context), status=503)
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response


class DatabaseBusyMiddleware(MiddlewareMixin):
    """Turn a busy-database error that escaped a view into 503 + Retry-After (never a 500).

    Errors raised inside other middleware never reach process_exception: `server_error`
    (the site's handler500) answers those the same way when DEBUG is off."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_busy(exception):
            return None
        log.error("%s %s: the database stayed busy: %s", request.method, request.path, exception)
        return busy_response(request)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a busy database is a 503 with Retry-After; anything else Django's 500 page."""
    exc = sys.exc_info()[1]
    if exc is not None and is_database_busy(exc):
        return busy_response(request)
    return defaults.server_error(request)
