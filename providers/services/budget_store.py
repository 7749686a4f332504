"""Where budgets keep their running spend and the holds of requests in flight, atomically.

Per (scope, period) line there is a spend counter (integer nano-dollars, seeded from the
ledger by budget.py) and the holds: what each request in flight reserved, by token, each with
an expiry so that the holds of a process that died lapse by themselves.

- Redis (django-redis, REDIS_URL): one Lua script checks every line and, when none is spent,
  holds the amount on all of them: one atomic step for every worker on that Redis. Holds are
  a hash (token -> nano-dollars, plus their running total) and a sorted set (token ->
  expiry); expired holds are dropped by the next script that looks at the line. Settling is a
  second script: drop the hold, add the real cost to the counter.
- Any other cache (local memory, the embedded default, is per process anyway): one lock per
  process around the same steps; the holds live in this process's memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from dataclasses import dataclass

from django.core.cache import caches


@dataclass(frozen=True, slots=True)
class Line:
    """One budget limit a request falls under: its counter, its holds and its limit."""

    spend_key: str
    limit_nano: int

    @property
    def holds_key(self) -> str:
        return self.spend_key + ":holds"

    @property
    def expiry_key(self) -> str:
        return self.spend_key + ":hold-expiry"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a reservation met: None of these fields set when it was held."""

    refused_at: int | None = None  # index of the line whose budget is spent
    missing_at: int | None = None  # index of a line whose counter is not seeded yet
    spent_nano: int = 0
    held_nano: int = 0


HELD = Verdict()

_RESERVE = """
local now, expires, amount, token = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local ttl = tonumber(ARGV[5])
local lines = #KEYS / 3
for i = 0, lines - 1 do
  local spend, holds, expiry = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local spent = redis.call('GET', spend)
  if not spent then return {-1, i, 0, 0} end
  spent = tonumber(spent)
  local limit = tonumber(ARGV[6 + i])
  local lapsed = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
  if #lapsed > 0 then
    for _, old in ipairs(lapsed) do
      local held = redis.call('HGET', holds, old)
      if held then
        redis.call('HINCRBY', holds, '~total', -tonumber(held))
        redis.call('HDEL', holds, old)
      end
    end
    redis.call('ZREMRANGEBYSCORE', expiry, '-inf', now)
  end
  local held = tonumber(redis.call('HGET', holds, '~total') or '0')
  if spent + held >= limit then return {0, i, spent, held} end
end
if amount > 0 then
  for i = 0, lines - 1 do
    local holds, expiry = KEYS[3 * i + 2], KEYS[3 * i + 3]
    if redis.call('HSETNX', holds, token, amount) == 1 then
      redis.call('HINCRBY', holds, '~total', amount)
    end
    redis.call('ZADD', expiry, expires, token)
    redis.call('EXPIRE', holds, ttl)
    redis.call('EXPIRE', expiry, ttl)
  end
end
return {1, 0, 0, 0}
"""

_SETTLE = """
local token, cost = ARGV[1], tonumber(ARGV[2])
for i = 0, #KEYS / 3 - 1 do
  local spend, holds, expiry = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local held = redis.call('HGET', holds, token)
  if held then
    redis.call('HINCRBY', holds, '~total', -tonumber(held))
    redis.call('HDEL', holds, token)
    redis.call('ZREM', expiry, token)
  end
  if cost > 0 and redis.call('EXISTS', spend) == 1 then redis.call('INCRBY', spend, cost) end
end
return 1
"""

_HELD = """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
local total = tonumber(redis.call('HGET', KEYS[2], '~total') or '0')
for _, old in ipairs(lapsed) do total = total - tonumber(redis.call('HGET', KEYS[2], old) or '0') end
return total
"""


class RedisStore:
    """Lines in Redis, each step one Lua script (atomic across every process on that server).

    The backend is looked up at each call: Django keeps one cache object per thread."""

    def _run(self, source: str, lines: tuple[Line, ...], args: list) -> object:
        from redis.exceptions import NoScriptError

        backend = caches["default"]
        make = backend.client.make_key
        keys = [str(make(k)) for line in lines for k in (line.spend_key, line.holds_key, line.expiry_key)]
        client = backend.client.get_client(write=True)
        sha = _SHA[source]
        try:
            return client.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:  # a new or flushed server: load it once
            return client.eval(source, len(keys), *keys, *args)

    def reserve(
        self, lines: tuple[Line, ...], token: str, amount_nano: int, now_ms: int, ttl_s: int
    ) -> Verdict:
        args = [
            now_ms,
            now_ms + ttl_s * 1000,
            amount_nano,
            token,
            ttl_s,
            *(line.limit_nano for line in lines),
        ]
        status, index, spent, held = self._run(_RESERVE, lines, args)
        if status == 1:
            return HELD
        if status == -1:
            return Verdict(missing_at=int(index))
        return Verdict(refused_at=int(index), spent_nano=int(spent), held_nano=int(held))

    def settle(self, lines: tuple[Line, ...], token: str, cost_nano: int) -> None:
        self._run(_SETTLE, lines, [token, cost_nano])

    def held(self, line: Line, now_ms: int) -> int:
        return int(self._run(_HELD, (line,), [now_ms]))

    def reset(self) -> None:
        """Nothing to forget here: Redis holds expire by themselves."""


# EVALSHA names a script by its SHA-1 (Redis' choice; nothing secret is hashed).
_SHA = {s: hashlib.sha1(s.encode(), usedforsecurity=False).hexdigest() for s in (_RESERVE, _SETTLE, _HELD)}


class LocalStore:
    """Lines in this process: the cache's counter and a dict of holds, under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holds: dict[str, dict[str, tuple[int, int]]] = {}  # holds key -> token -> (nano, expiry ms)

    def _held(self, line: Line, now_ms: int) -> int:
        holds = self._holds.get(line.holds_key)
        if not holds:
            return 0
        for token in [t for t, (_, expires) in holds.items() if expires <= now_ms]:
            del holds[token]
        return sum(nano for nano, _ in holds.values())

    def reserve(
        self, lines: tuple[Line, ...], token: str, amount_nano: int, now_ms: int, ttl_s: int
    ) -> Verdict:
        backend = caches["default"]
        with self._lock:
            for index, line in enumerate(lines):
                spent = backend.get(line.spend_key)
                if spent is None:
                    return Verdict(missing_at=index)
                held = self._held(line, now_ms)
                if int(spent) + held >= line.limit_nano:
                    return Verdict(refused_at=index, spent_nano=int(spent), held_nano=held)
            if amount_nano > 0:
                for line in lines:
                    holds = self._holds.setdefault(line.holds_key, {})
                    holds.setdefault(token, (amount_nano, now_ms + ttl_s * 1000))
            return HELD

    def settle(self, lines: tuple[Line, ...], token: str, cost_nano: int) -> None:
        backend = caches["default"]
        with self._lock:
            for line in lines:
                holds = self._holds.get(line.holds_key)
                if holds is not None:
                    holds.pop(token, None)
                    if not holds:
                        del self._holds[line.holds_key]
                if cost_nano > 0:
                    # Not seeded (or evicted): the next check reads the ledger, which has this cost.
                    with contextlib.suppress(ValueError):
                        backend.incr(line.spend_key, cost_nano)

    def held(self, line: Line, now_ms: int) -> int:
        with self._lock:
            return self._held(line, now_ms)

    def reset(self) -> None:
        with self._lock:
            self._holds.clear()


_REDIS = RedisStore()
_local = LocalStore()


def store() -> RedisStore | LocalStore:
    """Redis when the default cache is django-redis, else this process's lock and holds."""
    try:
        from django_redis.cache import RedisCache
    except ImportError:  # pragma: no cover (a requirement)
        return _local
    return _REDIS if isinstance(caches["default"], RedisCache) else _local


def _forget_after_fork() -> None:
    """A forked worker holds nothing yet: its parent's in-memory holds are not its own."""
    global _local
    _local = LocalStore()


os.register_at_fork(after_in_child=_forget_after_fork)
