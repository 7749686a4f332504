"""Cache calls from async code without blocking the event loop.

Django's cache API is synchronous. With the local-memory cache (the embedded default) a call
is a dictionary lookup and is made at once; with a cache server (Redis, REDIS_URL) a call is a
network round trip, so it runs on a worker thread and the event loop serves other requests
meanwhile. (Django's own `cache.aget` & co. hop to the single thread-sensitive thread every
time, memory cache included, which would serialise every request behind it.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache

T = TypeVar("T")


def cache_is_local() -> bool:
    return isinstance(caches["default"], LocMemCache)


async def cache_run(call: Callable[..., T], /, *args, **kwargs) -> T:
    """`call(*args, **kwargs)` (a cache operation): inline for memory, off the loop for a server."""
    if cache_is_local():
        return call(*args, **kwargs)
    return await sync_to_async(call, thread_sensitive=False)(*args, **kwargs)
