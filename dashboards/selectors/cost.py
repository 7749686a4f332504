"""Cost figures: spend over time, tokens, spend by source and gateway key, cost of reliability.

Money is exact Decimal USD summed from the ledger's cost_usd (attempt rows: the money each
provider charged, failed attempts with usage included); presentation rounds to the cent.
Spend by gateway key reads completions (attempts carry no key); its total equals the rest.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from dashboards.outcomes import SUCCESS
from dashboards.selectors.filters import Filters
from dashboards.selectors.query import attempt_sums, completion_sums
from dashboards.selectors.timeslots import series_edges, slot_keys, slot_labels
from providers.models import ChainStep, FallbackChain
from providers.selectors import attempt_cost, chain_usable_steps, price_lookup
from providers.types import Price, Usage

_PREMIUM = ("attempts", "cost_usd", "input_tokens", "output_tokens", "cached_tokens", "unpriced")
TOP = 8
OTHER = "Other"
ZERO = Decimal(0)


def cost_summary(f: Filters) -> dict:
    rows = attempt_sums(f, ("outcome",))
    total = {k: sum((r[k] for r in rows), ZERO if k == "cost_usd" else 0) for k in _SUMMED}
    failed = [r for r in rows if r["outcome"] != SUCCESS]
    requests = sum(r["completions"] for r in completion_sums(f, measures=("completions",)))
    return {
        **total,
        "requests": requests,
        "cost_per_1k_requests": total["cost_usd"] * 1000 / requests if requests else None,
        "failed_cost_usd": sum((r["cost_usd"] for r in failed), ZERO),
        "failed_time_s": sum(r["latency_ms_sum"] for r in failed) / 1000,
    }


_SUMMED = ("attempts", "cost_usd", "input_tokens", "output_tokens", "cached_tokens", "unpriced")


def spend_series(f: Filters, by: str) -> dict:
    """Spend per time slot and per provider_name or model: the top 8 by spend, then "Other"."""
    edges = series_edges(f)
    rows = attempt_sums(f, (by,), series=True, measures=("cost_usd",))
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        totals[row[by]] += row["cost_usd"]
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    names = ranked[:TOP] + ([OTHER] if len(ranked) > TOP else [])
    values = {name: [ZERO] * (len(edges) - 1) for name in names}
    for row in rows:
        name = row[by] if row[by] in ranked[:TOP] else OTHER
        values[name][row["slot"]] += row["cost_usd"]
    return {"labels": slot_labels(f, edges), "keys": slot_keys(f, edges), "names": names, "values": values}


def tokens_series(f: Filters) -> dict:
    edges = series_edges(f)
    slots = len(edges) - 1
    out = {"input_tokens": [0] * slots, "output_tokens": [0] * slots, "cached_tokens": [0] * slots}
    for row in attempt_sums(f, series=True, measures=tuple(out)):
        for name, values in out.items():
            values[row["slot"]] += row[name]
    return {"labels": slot_labels(f, edges), "keys": slot_keys(f, edges), **out}


def spend_by(f: Filters, dimension: str) -> list[dict]:
    """Spend per source (from attempts) or per gateway_key_prefix (from completions)."""
    if dimension == "gateway_key_prefix":
        count = "completions"
        rows = completion_sums(f, (dimension,), measures=("cost_usd", count, "unpriced"))
    else:
        count = "attempts"
        rows = attempt_sums(f, (dimension,), measures=("cost_usd", count, "unpriced"))
    out = [
        {
            "name": row[dimension],
            "cost_usd": row["cost_usd"],
            "count": row[count],
            "unpriced": row["unpriced"],
        }
        for row in rows
    ]
    return sorted(out, key=lambda r: (-r["cost_usd"], r["name"]))


def failure_cost(f: Filters) -> dict:
    """Money and time spent on failed attempts, per provider and failure class."""
    per: dict[str, dict] = defaultdict(
        lambda: {"attempts": 0, "cost_usd": ZERO, "time_s": 0.0, "by_class": {}}
    )
    for row in attempt_sums(
        f, ("provider_name", "outcome"), measures=("attempts", "cost_usd", "latency_ms_sum")
    ):
        if row["outcome"] == SUCCESS:
            continue
        provider = per[row["provider_name"]]
        provider["attempts"] += row["attempts"]
        provider["cost_usd"] += row["cost_usd"]
        provider["time_s"] += row["latency_ms_sum"] / 1000
        provider["by_class"][row["outcome"]] = row["latency_ms_sum"] / 1000
    providers = sorted(per, key=lambda name: (-per[name]["time_s"], name))
    return {"providers": providers, "rows": [{"name": name, **per[name]} for name in providers]}


def _first_steps(chain_ids: list[int]) -> dict[int, ChainStep]:
    """Each chain's first step it will try."""
    return {chain_id: steps[0] for chain_id, steps in chain_usable_steps(chain_ids=chain_ids).items()}


def _cost_at(step: ChainStep | None, row: dict) -> Decimal | None:
    price_row = price_lookup(step.provider.kind, step.model) if step else None
    if price_row is None:
        return None
    price = Price(price_row.input_per_mtok, price_row.output_per_mtok, price_row.cached_input_per_mtok)
    cost, _ = attempt_cost(Usage(row["input_tokens"], row["output_tokens"], row["cached_tokens"]), price)
    return cost


def fallback_premium(f: Filters) -> list[dict]:
    """Per chain: answers from later steps, what they cost, and what the same tokens would have
    cost at the chain's first step's current price (None when that step has no price)."""
    rows = attempt_sums(f, ("chain_id", "step_position"), where={"outcome": SUCCESS}, measures=_PREMIUM)
    first = _first_steps([r["chain_id"] for r in rows])
    names = dict(FallbackChain.objects.filter(id__in=list(first)).values_list("id", "name"))
    out = []
    for chain_id in sorted({r["chain_id"] for r in rows}):
        step = first.get(chain_id)
        later = [
            r
            for r in rows
            if r["chain_id"] == chain_id and (step is None or r["step_position"] != step.position)
        ]
        if not later:
            continue
        tokens = {k: sum(r[k] for r in later) for k in ("input_tokens", "output_tokens", "cached_tokens")}
        cost = sum((r["cost_usd"] for r in later), ZERO)
        at_first = _cost_at(step, tokens)
        out.append(
            {
                "chain_id": chain_id,
                "name": names.get(chain_id, f"chain #{chain_id}"),
                "first_step": f"{step.provider.name} / {step.model}" if step else "",
                "answers": sum(r["attempts"] for r in later),
                "cost_usd": cost,
                "first_step_cost_usd": at_first,
                "extra_usd": None if at_first is None else cost - at_first,
                "unpriced": sum(r["unpriced"] for r in later),
            }
        )
    return out
