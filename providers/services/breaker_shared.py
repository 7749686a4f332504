"""Circuits shared by every process through Redis, with a mirror so the hot path stays local.

- is_open on a closed circuit reads this process's mirror of the circuits that are not closed:
  no round trip. The mirror is filled at first use, kept by a background thread that hears
  every change at once (pub/sub) and rereads the whole set every REFRESH_S, and updated by
  the answers to this process's own scripts.
- Once a cooldown has passed, the one half-open probe is taken in Redis (SET NX with a TTL:
  exactly one across every process); the other requests of this process skip without asking
  again while it runs, those of other processes ask at most every PROBE_RECHECK_S.
- A failure is sent at once, with the verdicts queued before it (in order), on the request's
  thread: the circuit it opens is in Redis, and published, before the request goes on. A
  success is queued and sent by the background thread within POLL_S (several in one round trip).
- Calls made on a request's path wait at most REQUEST_TIMEOUT_S. When Redis fails, the
  process logs it once and uses its own circuits (LocalCircuits, seeded with the open ones it
  knew) until the background thread finds Redis answering again (it tries every RETRY_S);
  no request fails for it, and none waits on Redis meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from redis.exceptions import RedisError

from .breaker_local import PROBE_WAIT_S, Key, LocalCircuits, Seen, retry_reason
from .breaker_policy import GOOD, BreakerPolicy
from .breaker_redis import RedisCircuits, make_client, seen_from

log = logging.getLogger("rana.breaker")

REQUEST_TIMEOUT_S = 0.01  # a call on a request's path: a probe's lease, a failure's verdict
BACKGROUND_TIMEOUT_S = 1.0  # the background thread's calls, and the status table's
POLL_S = 0.02  # the background thread waits this long for a change before sending queued successes
REFRESH_S = 0.5  # it rereads every circuit that is not closed this often (a missed change, a reconnect)
RETRY_S = 2.0  # after Redis failed, it is tried again this often; meanwhile each process is on its own
PROBE_RECHECK_S = 0.25  # another process probes: ask Redis again after this


class BreakerUnavailable(RuntimeError):
    """Redis is unreachable: a change meant for every process could not be made."""


class SharedCircuits:
    def __init__(self, url: str, make_key: Callable[[str], str], clock: Callable[[], float]) -> None:
        self.store = RedisCircuits(make_key)
        self.local = LocalCircuits()  # this process's own state while Redis is away
        self.down = False
        self._clock = clock
        self._fast = make_client(url, REQUEST_TIMEOUT_S)
        self._calm = make_client(url, BACKGROUND_TIMEOUT_S)
        self._mirror: dict[Key, Seen] = {}
        self._busy: dict[Key, float] = {}  # a probe runs: until when not to ask Redis again
        self._pending: deque[tuple] = deque()
        self._send_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._down_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the request path -----------------------------------------------------------------

    def admit(self, key: Key, lease_s: float, now: float) -> tuple[bool, str | None]:
        if self._thread is None:
            self._start()
        if self.down:
            return self.local.admit(key, lease_s, now)
        seen = self._mirror.get(key)
        if seen is None:
            return True, None
        if seen.manual or now < seen.open_until or self._busy.get(key, 0.0) > now:
            return False, None
        token = os.urandom(8).hex()
        try:
            status, seen = self.store.admit(self._fast, key, token, lease_s, now)
        except RedisError as exc:
            self._outage(exc)
            return self.local.admit(key, lease_s, now)
        self._see(key, seen)
        if status == "granted":
            self._busy[key] = now + lease_s
            return True, token
        if status == "busy":
            self._busy[key] = now + PROBE_RECHECK_S
        return status == "closed", None

    def record(
        self,
        key: Key,
        kind: str,
        failure_class: str,
        retry_after_s: float,
        policy: BreakerPolicy,
        now: float,
        token: str | None,
    ) -> None:
        if self._thread is None:
            self._start()
        if token is not None:
            self._busy.pop(key, None)
        if self.down:
            self.local.record(key, kind, failure_class, retry_after_s, policy, now, token)
            return
        self._pending.append((key, kind, failure_class, retry_after_s, policy, now, token))
        if kind == GOOD:
            seen = self._mirror.get(key)
            if seen is not None and not seen.manual:
                self._mirror.pop(key, None)  # closed here at once; Redis has it within POLL_S
            return
        self._send(self._fast, wait_s=REQUEST_TIMEOUT_S)

    def release(self, key: Key, token: str) -> None:
        self._busy.pop(key, None)
        if self.down:
            self.local.release(key, token)
            return
        try:
            self.store.release(self._fast, key, token)
        except RedisError as exc:
            self._outage(exc)

    def retry_in(self, key: Key, policy: BreakerPolicy, now: float) -> tuple[str, float] | None:
        if self.down:
            return self.local.retry_in(key, policy, now)
        seen = self._mirror.get(key)
        if seen is None:
            return None
        if seen.manual:
            return "circuit_open", policy.cooldown_s
        if now < seen.open_until:
            return retry_reason(seen.reason), seen.open_until - now
        if self._busy.get(key, 0.0) > now:
            return retry_reason(seen.reason), PROBE_WAIT_S
        return None

    # -- reads and operators' changes ---------------------------------------------------

    def rows(self, window_s: float, now: float) -> list[dict]:
        if not self.down:
            try:
                return self.store.rows(self._calm, window_s, now)
            except RedisError as exc:
                self._outage(exc)
        return self.local.rows(window_s, now)

    def force(self, key: Key, action: str, now: float) -> None:
        if self.down:
            raise BreakerUnavailable("Redis is unreachable: the circuit was not changed")
        try:
            self.store.force(self._calm, key, action, now)
        except RedisError as exc:
            self._outage(exc)
            raise BreakerUnavailable(f"Redis is unreachable ({exc}): the circuit was not changed") from exc
        self._busy.pop(key, None)
        self._see(key, Seen(now, "manual", True) if action == "open" else None)

    def flush(self) -> None:
        """Send the queued verdicts now (a graceful stop; tests)."""
        if not self.down:
            self._send(self._calm)

    def clear(self) -> None:
        self._pending.clear()
        self._mirror, self._busy = {}, {}
        self.local.clear()
        with contextlib.suppress(RedisError):
            self.store.clear(self._calm)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    # -- keeping the mirror -------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            try:
                self._mirror = self.store.open_circuits(self._fast)
            except RedisError as exc:
                self._outage(exc)
            self._thread = threading.Thread(target=self._run, name="rana-breaker", daemon=True)
            self._thread.start()

    def _see(self, key: Key, seen: Seen | None) -> None:
        if seen is None or not (seen.open_until or seen.manual):
            self._mirror.pop(key, None)
            self._busy.pop(key, None)
        else:
            self._mirror[key] = seen

    def _send(self, client, *, wait_s: float = -1) -> None:
        """Send every queued verdict, in order. Another thread sending: it takes these too (it
        goes on until the queue is empty, so a verdict queued while it sends is not left waiting
        for the next round)."""
        if not self._send_lock.acquire(timeout=wait_s):
            return
        try:
            while ops := [self._pending.popleft() for _ in range(len(self._pending))]:
                try:
                    after = self.store.record_many(client, ops)
                except RedisError as exc:
                    self._outage(exc, ops)
                    return
                for key, seen in after:
                    self._see(key, seen)
        finally:
            self._send_lock.release()

    def _outage(self, exc: Exception, ops: Sequence[tuple] = ()) -> None:
        with self._down_lock:
            if not self.down:
                log.warning(
                    "circuit breaker: Redis is unreachable (%s); this process keeps its own circuits "
                    "until it answers again",
                    exc,
                )
                self.local.seed(self._mirror, self._clock())
                self.down = True
        for op in [*ops, *(self._pending.popleft() for _ in range(len(self._pending)))]:
            self.local.record(*op)

    def _recovered(self) -> None:
        with self._down_lock:
            self.local.clear()
            self.down = False
        log.info("circuit breaker: Redis answers again; circuits are shared again")

    def _run(self) -> None:
        pubsub = None
        refresh_at = 0.0
        while not self._stop.is_set():
            try:
                if self.down:
                    pubsub = _closed(pubsub)
                    if self._stop.wait(RETRY_S):
                        return
                    self._mirror = self.store.open_circuits(self._calm)  # raises while Redis is away
                    self._recovered()
                    continue
                if pubsub is None:
                    pubsub = self._calm.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self.store.channel)
                    refresh_at = 0.0  # changes may have been missed: reread them all
                if time.monotonic() >= refresh_at:
                    self._mirror = self.store.open_circuits(self._calm)
                    refresh_at = time.monotonic() + REFRESH_S
                message = pubsub.get_message(timeout=POLL_S)
                for _ in range(1000):
                    if message is None:
                        break
                    self._see(*seen_from(message["data"]))
                    message = pubsub.get_message(timeout=0.0)
                self._send(self._calm)
            except (RedisError, OSError) as exc:
                pubsub = _closed(pubsub)
                self._outage(exc)
            except Exception:
                log.exception("circuit breaker: the background thread failed; going on")
                self._stop.wait(RETRY_S)
        _closed(pubsub)


def _closed(pubsub) -> None:
    if pubsub is not None:
        with contextlib.suppress(Exception):
            pubsub.close()
