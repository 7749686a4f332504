"""The synthetic ledger's traffic: when requests arrive, where from, how big, what goes wrong.

Requests arrive over [start, end) with a day/night rhythm, spread over the chains by weight,
from the API (with a handful of gateway keys), batch jobs and the playground (a share with
injected faults, and a few streams the user stops). A few are cache hits or blocked by a
budget. What happens to each request is the engine's business (providers.services.simulation);
this module only says what the callers ask and when the providers have incidents.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid

from dashboards.services.catalogue import Chain
from providers.services import FAULT_CHOICES, STREAM_CUT, FaultSpec, Incident, SimRequest

KEYS = (("rk_7Hq2", 40), ("rk_Lm9x", 25), ("rk_pT4e", 15), ("rk_Zc81", 12), ("rk_b3Vw", 8))
# An injected timeout really waits (0.2 s of real time), so the synthetic mix has none.
INJECTED_FAULTS = tuple(kind for kind, _ in FAULT_CHOICES if kind != "timeout")
INJECTED_SHARE = 0.25  # of playground requests
CANCEL_SHARE = 0.03  # of playground streams, stopped after the first token
CACHE_HIT_SHARE, BUDGET_BLOCKED_SHARE = 0.03, 0.003  # budget blocks only on budgeted chains


def incidents(start: dt.datetime, end: dt.datetime) -> list[Incident]:
    """An outage, two 429 storms (one still going at the end) and a slow period."""
    span, minute = end - start, dt.timedelta(minutes=1)
    at = lambda share: start + span * share  # noqa: E731
    return [
        Incident("openai", at(0.55), at(0.55) + 90 * minute, 0.7, "server_error"),
        Incident("anthropic", at(0.3), at(0.3) + 240 * minute, 0.5, "rate_limited"),
        Incident("gemini", at(0.8), at(0.8) + 60 * minute, 0.4, "timeout"),
        Incident("anthropic", end - 45 * minute, end, 0.35, "rate_limited"),
    ]


def request_id(rng: random.Random, when: dt.datetime) -> uuid.UUID:
    """A UUIDv7 for a moment (as providers.models.ledger.new_request_id makes them)."""
    ms = int(when.timestamp() * 1000)
    rand = rng.getrandbits(74)
    value = (
        (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | rand & ((1 << 62) - 1)
    )
    return uuid.UUID(int=value)


class Traffic:
    def __init__(self, chains: list[Chain], start: dt.datetime, end: dt.datetime, seed: int) -> None:
        self.rng = random.Random(seed)
        self.chains, self.weights = chains, [c.weight for c in chains]
        self.start, self.end = start, end

    def times(self, count: int, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        """Sorted arrival times in [start, end) with a day/night rhythm (busiest mid-afternoon UTC)."""
        span = (end - start).total_seconds()
        rng, out = self.rng, []
        while len(out) < count:
            moment = start + dt.timedelta(seconds=rng.random() * span)
            hour = moment.hour + moment.minute / 60
            if rng.random() * 1.6 < 1 + 0.6 * math.sin((hour - 9) / 24 * 2 * math.pi):
                out.append(moment)
        return sorted(out)

    def requests(
        self, count: int, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> list[SimRequest]:
        """`count` requests arriving in [start, end) (default: the whole range), in order."""
        times = self.times(count, start or self.start, end or self.end)
        return [self.request(when) for when in times]

    def request(self, when: dt.datetime) -> SimRequest:
        rng = self.rng
        chain = rng.choices(self.chains, self.weights)[0]
        if chain.slug == "batch":
            source = "batch" if rng.random() < 0.85 else "api"
        else:
            source = rng.choices(("api", "playground", "batch"), (78, 12, 10))[0]
        stream = source == "playground" or (source == "api" and rng.random() < 0.55)
        prompt = int(rng.lognormvariate(math.log(2400 if source == "batch" else 900), 0.8)) + 20
        roll = rng.random()
        settled = ""
        if roll < CACHE_HIT_SHARE:
            settled = "cache_hit"
        elif roll < CACHE_HIT_SHARE + BUDGET_BLOCKED_SHARE and chain.slug in ("support", "batch"):
            settled = "budget_blocked"
        return SimRequest(
            at=when,
            chain=chain.slug,
            id=request_id(rng, when),
            source=source,
            gateway_key_prefix="" if source == "playground" else rng.choices(*zip(*KEYS, strict=True))[0],
            stream=stream,
            input_tokens=prompt,
            output_tokens=int(rng.lognormvariate(math.log(320 if source == "batch" else 260), 0.6)) + 5,
            cached_tokens=int(prompt * rng.choice((0, 0, 0.5, 0.8))),
            faults=self._faults(chain) if source == "playground" else (),
            cancel=source == "playground" and rng.random() < CANCEL_SHARE,
            settled=settled,
        )

    def _faults(self, chain: Chain) -> tuple[FaultSpec, ...]:
        """A playground user's injected fault, on a quarter of the playground's requests."""
        rng = self.rng
        if rng.random() >= INJECTED_SHARE:
            return ()
        failure = rng.choice(INJECTED_FAULTS)
        return (
            FaultSpec(
                step=rng.randrange(chain.steps),
                failure=failure,
                retry_after_s=float(rng.randint(1, 10)) if failure == "rate_limited" else None,
                cut_after_tokens=rng.choice((0, 1, 2)) if failure == STREAM_CUT else 0,
                times=rng.choice((1, 2, None)),
            ),
        )
