"""Circuits in Redis (REDIS_URL): every change one Lua script, atomic for every process.

The rules are breaker_local.py's, in Lua. Times are integer milliseconds of the breaker's
clock (wall-clock time, shared by the processes of a machine). Per circuit (`<provider id>:
<model>`): a hash (consecutive failures, failed probes in a row, open until, reason, manual,
last failure class, last change, cooldown), the failure-rate window (a hash of bucket ->
count, kept MAX_WINDOW_S), and the half-open probe's lease (SET NX with a TTL, its value the
probe's token). Besides: a hash of the circuits that are not closed (what each process
mirrors), the set of every circuit known (for the status table), and a channel on which each
change to the first is published, so that every process hears of it at once.

Keys are named through the cache's KEY_PREFIX (as budget_store.py names them). The client is
the breaker's own, on the cache's LOCATION: short socket timeouts (a request never waits long
on a dead Redis) and no retries (the breaker falls back to the process's own state instead).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from .breaker_local import Key, Seen, circuit_row
from .breaker_policy import MAX_WINDOW_S, WINDOW_BUCKET_S, BreakerPolicy

BUCKET_MS = int(WINDOW_BUCKET_S * 1000)
MAX_BUCKETS = int(MAX_WINDOW_S / WINDOW_BUCKET_S)
KEEP_MS = 24 * 3600 * 1000  # a circuit nothing has touched for a day is forgotten

_RECORD = """
local c, w, lease, opened, known = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, kind, class, token = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local retry_after, threshold, rate = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local buckets, min_calls = tonumber(ARGV[8]), tonumber(ARGV[9])
local base, cap = tonumber(ARGV[10]), tonumber(ARGV[11])
local long, id, channel = tonumber(ARGV[12]), ARGV[13], ARGV[14]
local bucket_ms, max_buckets, keep = tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
local probe = token ~= '' and redis.call('GET', lease) == token
if probe then redis.call('DEL', lease) end
local s = redis.call('HMGET', c, 'n', 'lv', 'u', 'r', 'm')
local n, lv, u = tonumber(s[1]) or 0, tonumber(s[2]) or 0, tonumber(s[3]) or 0
local reason, manual = s[4] or '', s[5] == '1'
local bucket = math.floor(now / bucket_ms)
redis.call('SADD', known, id)

local function tally(failed)
  if redis.call('HEXISTS', w, 'c' .. bucket) == 0 then
    for _, f in ipairs(redis.call('HKEYS', w)) do
      if tonumber(string.sub(f, 2)) <= bucket - max_buckets then redis.call('HDEL', w, f) end
    end
  end
  redis.call('HINCRBY', w, 'c' .. bucket, 1)
  if failed then redis.call('HINCRBY', w, 'f' .. bucket, 1) end
  redis.call('PEXPIRE', w, max_buckets * bucket_ms)
end

local function trips()
  if n >= threshold then return true end
  local fields = {}
  for b = bucket - buckets + 1, bucket do
    fields[#fields + 1] = 'c' .. b
    fields[#fields + 1] = 'f' .. b
  end
  local v = redis.call('HMGET', w, unpack(fields))
  local calls, fails = 0, 0
  for i = 1, #v, 2 do
    calls = calls + (tonumber(v[i]) or 0)
    fails = fails + (tonumber(v[i + 1]) or 0)
  end
  return calls >= min_calls and fails >= rate * calls
end

local function announce(m)
  if u > 0 or m == 1 then
    local event = cjson.encode({id = id, u = u, r = reason, m = m})
    redis.call('HSET', opened, id, event)
    redis.call('PUBLISH', channel, event)
  else
    redis.call('HDEL', opened, id)
    redis.call('PUBLISH', channel, cjson.encode({id = id, u = 0, r = '', m = 0}))
  end
end

local function shut(untl, why, clear_window)
  u, reason = untl, why
  redis.call('HSET', c, 'u', u, 'r', reason, 't', now, 'cd', untl - now)
  if clear_window then redis.call('DEL', w) end
  announce(0)
end

if kind == 'success' then
  tally(false)
  redis.call('HSET', c, 'n', 0, 'lv', 0)
  if u > 0 and not manual then
    u, reason = 0, ''
    redis.call('HSET', c, 'u', 0, 'r', '', 't', now)
    announce(0)
  end
elseif kind == 'transient' then
  tally(true)
  n = n + 1
  redis.call('HSET', c, 'n', n, 'lc', class)
  if not manual then
    if probe then
      lv = lv + 1
      redis.call('HSET', c, 'lv', lv)
    end
    if probe or (u == 0 and trips()) then
      shut(now + math.floor(math.min(base * 2 ^ math.min(lv, 32), math.max(cap, base))), class, true)
    end
  end
else
  redis.call('HSET', c, 'lc', class)
  local untl = now + (kind == 'long' and long or retry_after)
  if not manual and untl > math.max(now, u) then
    shut(untl, kind == 'long' and class or 'rate_limited', false)
  end
end
if not manual then redis.call('PEXPIRE', c, keep) end
return {u, reason, manual and 1 or 0}
"""

_ADMIT = """
local s = redis.call('HMGET', KEYS[1], 'u', 'r', 'm')
local u, reason, manual = tonumber(s[1]) or 0, s[2] or '', s[3] == '1' and 1 or 0
if u == 0 and manual == 0 then
  redis.call('HDEL', KEYS[3], ARGV[4])  -- a circuit forgotten (expired) while listed as open
  return {'closed', 0, '', 0}
end
if manual == 1 or tonumber(ARGV[1]) < u then return {'open', u, reason, manual} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'granted', u, reason, 0} end
return {'busy', u, reason, 0}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_FORCE = """
local c, w, lease, opened, known = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local action, now, id, channel, keep = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])
redis.call('DEL', lease)
if action == 'open' then
  redis.call('SADD', known, id)
  redis.call('HSET', c, 'm', 1, 'u', now, 'r', 'manual', 't', now)
  redis.call('PERSIST', c)
  local event = cjson.encode({id = id, u = now, r = 'manual', m = 1})
  redis.call('HSET', opened, id, event)
  redis.call('PUBLISH', channel, event)
  return 1
end
redis.call('DEL', c, w)
redis.call('HDEL', opened, id)
if action == 'close' then
  redis.call('SADD', known, id)
  redis.call('HSET', c, 't', now)
  redis.call('PEXPIRE', c, keep)
else
  redis.call('SREM', known, id)
end
redis.call('PUBLISH', channel, cjson.encode({id = id, u = 0, r = '', m = 0}))
return 1
"""

# EVALSHA names a script by its SHA-1 (Redis' choice; nothing secret is hashed).
_SHA = {
    s: hashlib.sha1(s.encode(), usedforsecurity=False).hexdigest()
    for s in (_RECORD, _ADMIT, _RELEASE, _FORCE)
}


def circuit_id(key: Key) -> str:
    return f"{key[0]}:{key[1]}"


def circuit_key(name: str) -> Key:
    provider, model = name.split(":", 1)
    return (None if provider == "None" else int(provider)), model


def seen_from(event: str) -> tuple[Key, Seen]:
    """A published change (or an entry of the open hash): the circuit and how it stands."""
    data = json.loads(event)
    return circuit_key(data["id"]), Seen(data["u"] / 1000, data["r"], bool(data["m"]))


def make_client(url: str, timeout_s: float) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


class RedisCircuits:
    """The scripts, run on a given client (the request path's or the background thread's)."""

    def __init__(self, make_key: Callable[[str], str]) -> None:
        self._make_key = make_key
        self.opened_key = make_key("breaker:open")
        self.known_key = make_key("breaker:known")
        self.channel = make_key("breaker:events")

    def _keys(self, key: Key) -> list[str]:
        name = circuit_id(key)
        make = self._make_key
        circuit = [make(f"breaker:{part}:{name}") for part in ("c", "w", "p")]
        return [*circuit, self.opened_key, self.known_key]

    @staticmethod
    def _run(client: redis.Redis, source: str, keys: list[str], args: Sequence) -> list:
        try:
            return client.evalsha(_SHA[source], len(keys), *keys, *args)
        except NoScriptError:  # a new or flushed server: load it once
            return client.eval(source, len(keys), *keys, *args)

    def record_many(self, client: redis.Redis, ops: Sequence[tuple]) -> list[tuple[Key, Seen | None]]:
        """Apply verdicts in order (one round trip): each circuit as it stands after its verdict."""
        batches = [(self._keys(op[0]), self._record_args(*op)) for op in ops]
        pipe = client.pipeline(transaction=False)
        for keys, args in batches:
            pipe.evalsha(_SHA[_RECORD], len(keys), *keys, *args)
        results = pipe.execute(raise_on_error=False)
        after = []
        for op, (keys, args), result in zip(ops, batches, results, strict=True):
            if isinstance(result, NoScriptError):
                result = client.eval(_RECORD, len(keys), *keys, *args)
            elif isinstance(result, Exception):
                raise result
            until, reason, manual = result
            after.append((op[0], Seen(int(until) / 1000, reason, bool(manual)) if until or manual else None))
        return after

    def _record_args(
        self,
        key: Key,
        kind: str,
        failure_class: str,
        retry_after_s: float,
        policy: BreakerPolicy,
        now: float,
        token: str | None,
    ) -> list:
        return [
            int(now * 1000),
            kind,
            failure_class,
            token or "",
            int(retry_after_s * 1000),
            policy.threshold,
            repr(policy.failure_rate),
            policy.window_buckets,
            policy.min_calls,
            int(policy.cooldown_s * 1000),
            int(policy.cooldown_cap_s * 1000),
            int(policy.long_cooldown_s * 1000),
            circuit_id(key),
            self.channel,
            BUCKET_MS,
            MAX_BUCKETS,
            KEEP_MS,
        ]

    def admit(
        self, client: redis.Redis, key: Key, token: str, lease_s: float, now: float
    ) -> tuple[str, Seen | None]:
        """("closed" | "open" | "granted" | "busy", how the circuit stands)."""
        circuit, _window, lease, opened, _known = self._keys(key)
        args = [int(now * 1000), token, max(1, int(lease_s * 1000)), circuit_id(key)]
        status, until, reason, manual = self._run(client, _ADMIT, [circuit, lease, opened], args)
        return status, (Seen(int(until) / 1000, reason, bool(manual)) if status != "closed" else None)

    def release(self, client: redis.Redis, key: Key, token: str) -> None:
        self._run(client, _RELEASE, self._keys(key)[2:3], [token])

    def force(self, client: redis.Redis, key: Key, action: str, now: float) -> None:
        args = [action, int(now * 1000), circuit_id(key), self.channel, KEEP_MS]
        self._run(client, _FORCE, self._keys(key), args)

    def open_circuits(self, client: redis.Redis) -> dict[Key, Seen]:
        return dict(seen_from(event) for event in client.hgetall(self.opened_key).values())

    def rows(self, client: redis.Redis, window_s: float, now: float) -> list[dict]:
        names = sorted(client.smembers(self.known_key))
        newest = int(now * 1000) // BUCKET_MS
        buckets = range(newest - max(1, round(min(window_s, MAX_WINDOW_S) / WINDOW_BUCKET_S)) + 1, newest + 1)
        fields = [f"{kind}{b}" for b in buckets for kind in "cf"]
        pipe = client.pipeline(transaction=False)
        for name in names:
            circuit, window, lease, *_ = self._keys(circuit_key(name))
            pipe.hgetall(circuit).hmget(window, fields).exists(lease)
        found = pipe.execute()
        rows = []
        for i, name in enumerate(names):
            state, window, probing = found[3 * i : 3 * i + 3]
            if not state:
                client.srem(self.known_key, name)  # expired
                continue
            counts = [int(v or 0) for v in window]
            rows.append(
                circuit_row(
                    circuit_key(name),
                    now,
                    open_until=int(state.get("u", 0)) / 1000,
                    manual=state.get("m") == "1",
                    window=(sum(counts[0::2]), sum(counts[1::2])),
                    reason=state.get("r", ""),
                    failures=int(state.get("n", 0)),
                    last_class=state.get("lc", ""),
                    changed_at=int(state.get("t", 0)) / 1000,
                    probing=bool(probing),
                    cooldown_s=round(int(state.get("cd", 0)) / 1000, 1),
                )
            )
        return [r for r in rows if r["consecutive_failures"] or r["state"] != "closed" or r["changed_at"]]

    def clear(self, client: redis.Redis) -> None:
        """Forget every circuit (tests; breaker.reset())."""
        names = client.smembers(self.known_key)
        keys = [k for name in names for k in self._keys(circuit_key(name))[:3]]
        client.delete(*keys, self.opened_key, self.known_key)
