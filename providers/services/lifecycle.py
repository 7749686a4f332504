"""A serving process's start and stop, as far as the hub is concerned."""

from __future__ import annotations

import asyncio

from providers.http_client import shared_client_close
from providers.services.breaker import get_breaker
from providers.services.budget_refusals import refusals_flush
from providers.services.observe import observe_start
from providers.services.recorder import get_recorder, ledger_flush
from providers.services.tracing import tracing_flush


def service_start() -> None:
    """Start the ledger writer now, on the main thread, so its flush-on-stop hooks are in place
    and the journals that dead processes left are replayed at once; read what is observed
    (metrics, traces, the JSON completion log: observe.py)."""
    observe_start()
    recorder = get_recorder()
    start = getattr(recorder, "start", None)
    if start is not None:
        start()


async def service_shutdown(*, flush_timeout_s: float = 10.0) -> bool:
    """Close the shared upstream client, send the breaker's queued verdicts and the queued spans,
    and write every pending ledger row (budget refusals still counted in memory included); False
    if rows were still pending after the timeout."""
    await shared_client_close()
    await asyncio.to_thread(get_breaker().flush)
    refusals_flush()
    await asyncio.to_thread(tracing_flush)
    return await asyncio.to_thread(ledger_flush, flush_timeout_s)
