"""Reads for the request log: one resolved LogQuery, keyset pages over (created_at, id).

Pages never use OFFSET: a page is "the next N rows before (or after) this (created_at, id)",
which stays one index range scan however deep the page, and neither skips nor repeats a row
when many completions share a timestamp. The cursor is "<created_at in µs since 1970>_<id hex>".
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.lookups import IsNull

from providers.models import Attempt, Completion
from providers.selectors import bodies_matching

PAGE_SIZE = 50
EXPORT_PAGE_SIZE = 1_000
MATCHES_LISTED = 2_000  # a text search lists up to this many matches before it walks instead
COLUMNS = (
    "id", "created_at", "chain_slug", "source", "gateway_key_prefix", "stream", "outcome",
    "error_class", "answered_provider__name", "answered_model", "answered_step", "fallback_used",
    "attempt_count", "latency_ms", "ttft_ms", "input_tokens", "output_tokens", "cost_usd",
)  # fmt: skip
SEARCH_KEY, SEARCH_ERROR, SEARCH_PROMPT = "key", "error", "prompt"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Cursor:
    created_at: dt.datetime
    id: uuid.UUID

    def __str__(self) -> str:  # URL-safe: microseconds since the epoch, then the id
        micros = (self.created_at - EPOCH) // dt.timedelta(microseconds=1)
        return f"{micros}_{self.id.hex}"

    @classmethod
    def parse(cls, raw: str) -> Cursor:
        """A cursor from its text; ValueError when it is not one."""
        micros, _, hex_id = raw.partition("_")
        try:
            created_at = EPOCH + dt.timedelta(microseconds=int(micros))
        except OverflowError:
            raise ValueError("a cursor's time is out of range") from None
        return cls(created_at, uuid.UUID(hex=hex_id))


@dataclass(frozen=True)
class LogQuery:
    """What to show: every field optional (None or "" means no filter)."""

    start: dt.datetime | None = None  # aware; inclusive
    end: dt.datetime | None = None  # aware; exclusive
    chain_id: int | None = None
    provider: str = ""  # a provider tried by any attempt (its name)
    model: str = ""  # a model tried by any attempt (with the provider when both are given)
    outcome: str = ""
    source: str = ""
    key_prefix: str = ""  # exact gateway key prefix
    fallback: bool | None = None
    cost_above: Decimal | None = None
    latency_above: float | None = None  # ms
    request_id: uuid.UUID | None = None  # search: this request only
    search: str = ""
    search_in: str = SEARCH_ERROR


@dataclass(frozen=True)
class LogPage:
    rows: list[dict[str, Any]]
    older: Cursor | None  # the cursor for the next (older) page, None at the end
    newer: Cursor | None  # the cursor for the previous (newer) page, None on the first


def _attempt_filter(q: LogQuery) -> Q | None:
    wanted = Q()
    if q.provider:
        wanted &= Q(provider_name=q.provider)
    if q.model:
        wanted &= Q(model=q.model)
    return wanted or None


def _matching(matches: QuerySet) -> Q:
    """The completions `matches` (rows with a completion_id: attempts, kept bodies) point at,
    as a filter whose work is bounded both ways. The first MATCHES_LISTED + 1 matches are
    read: as few as that, the page is those completions, looked up by id. More: the text is
    common, and walking the completions newest first, probing each one's matches, fills a page
    after a short walk. Probing alone read every row when nothing matched; listing alone looked
    up every match of a common text; which plan a database picks from its estimates is no
    safer (a short text's are wild). The probe is a scalar subquery, `IS NOT NULL`, not EXISTS:
    PostgreSQL turns an EXISTS into a join over every match but keeps a subquery per row."""
    matches = matches.order_by()  # no model ordering: the listing stops at its limit
    found = list(matches.values_list("completion_id", flat=True)[: MATCHES_LISTED + 1])
    if len(found) <= MATCHES_LISTED:  # every match (counted in rows, not requests)
        return Q(pk__in=set(found))
    first = matches.filter(completion_id=OuterRef("pk")).values("completion_id")[:1]
    return Q(IsNull(Subquery(first), False))


def _with_error_text(q: LogQuery) -> Q:
    """Completions an attempt of which has the error text: read from the attempts that have
    any (their partial index, attempt_with_error_time), from the range's start on (an attempt
    starts after its request), with the provider and model filters."""
    attempts = Attempt.objects.filter(~Q(error_message=""), error_message__icontains=q.search)
    if q.start is not None:
        attempts = attempts.filter(started_at__gte=q.start)
    if (wanted := _attempt_filter(q)) is not None:
        attempts = attempts.filter(wanted)
    return _matching(attempts)


def _with_prompt_text(q: LogQuery) -> Q:
    """Completions whose kept body has the text in its messages, in the range (a body has its
    completion's created_at)."""
    bodies = bodies_matching(q.search)
    if q.start is not None:
        bodies = bodies.filter(created_at__gte=q.start)
    if q.end is not None:
        bodies = bodies.filter(created_at__lt=q.end)
    return _matching(bodies)


def log_queryset(q: LogQuery) -> QuerySet[Completion]:
    """Completions matching the query, unordered."""
    rows = Completion.objects.all()
    if q.request_id is not None:
        return rows.filter(pk=q.request_id)
    exact = {
        "created_at__gte": q.start,
        "created_at__lt": q.end,
        "chain_id": q.chain_id,
        "outcome": q.outcome or None,
        "source": q.source or None,
        "gateway_key_prefix": q.key_prefix or None,
        "fallback_used": q.fallback,
        "cost_usd__gt": q.cost_above,
        "latency_ms__gt": q.latency_above,
    }
    rows = rows.filter(**{name: value for name, value in exact.items() if value is not None})
    if q.search and q.search_in == SEARCH_KEY:
        rows = rows.filter(gateway_key_prefix__startswith=q.search)
    if q.search and q.search_in == SEARCH_PROMPT:  # kept bodies only (chains with body logging on)
        rows = rows.filter(_with_prompt_text(q))
    if q.search and q.search_in == SEARCH_ERROR:
        rows = rows.filter(_with_error_text(q))
    elif (attempts := _attempt_filter(q)) is not None:
        rows = rows.filter(Exists(Attempt.objects.filter(attempts, completion_id=OuterRef("pk"))))
    return rows


def _before(c: Cursor) -> Q:  # (created_at, id) < cursor, written as one range on created_at
    return Q(created_at__lte=c.created_at) & ~Q(created_at=c.created_at, id__gte=c.id)


def _after(c: Cursor) -> Q:
    return Q(created_at__gte=c.created_at) & ~Q(created_at=c.created_at, id__lte=c.id)


def _cursor(row: dict[str, Any]) -> Cursor:
    return Cursor(row["created_at"], row["id"])


def log_page(
    q: LogQuery, *, older_than: Cursor | None = None, newer_than: Cursor | None = None, size: int = PAGE_SIZE
) -> LogPage:
    """One page, newest first: the first page, the page before `older_than`, or the page after
    `newer_than` (still shown newest first)."""
    rows = log_queryset(q)
    if newer_than is not None:
        found = list(
            rows.filter(_after(newer_than)).order_by("created_at", "id").values(*COLUMNS)[: size + 1]
        )
        if not found:  # nothing newer: the first page
            return log_page(q, size=size)
        more_newer = len(found) > size
        found = found[:size][::-1]
        return LogPage(
            rows=found,
            older=_cursor(found[-1]),
            newer=_cursor(found[0]) if found and more_newer else None,
        )
    if older_than is not None:
        rows = rows.filter(_before(older_than))
    found = list(rows.order_by("-created_at", "-id").values(*COLUMNS)[: size + 1])
    more_older = len(found) > size
    found = found[:size]
    return LogPage(
        rows=found,
        older=_cursor(found[-1]) if more_older else None,
        newer=_cursor(found[0]) if found and older_than is not None else None,
    )


def log_rows(q: LogQuery, *, page_size: int = EXPORT_PAGE_SIZE) -> Iterator[dict[str, Any]]:
    """Every matching row, newest first, read one keyset page at a time (for exports)."""
    cursor = None
    while True:
        page = log_page(q, older_than=cursor, size=page_size)
        yield from page.rows
        if page.older is None:
            return
        cursor = page.older
