"""Reliability figures: success, fallback and error rates, attempts by outcome, the funnel.

Definitions (percentages rounded to 2 decimals; None when there is nothing to divide by):
- success rate: answered completions (success or cache_hit) / finished completions;
- fallback rate: completions answered by another step than the first one tried / finished
  completions;
- error rate: failed attempts / attempts, leaving out circuit_open skips and cancellations.
Provider and model filters narrow attempts to that provider/model and completions to those
it answered (see query.dimension_filters).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from dashboards.outcomes import ANSWERED, ATTEMPT_OUTCOMES, FAILURE_CLASSES, counts_as_error, in_error_rate
from dashboards.selectors.filters import Filters
from dashboards.selectors.query import attempt_sums, completion_sums
from dashboards.selectors.timeslots import series_edges, slot_keys, slot_labels
from providers.models import ChainStep, FallbackChain

ATTEMPTS, COMPLETIONS = ("attempts",), ("completions",)  # the only measures these figures need


def pct(part: float | Decimal, whole: float | Decimal) -> float | None:
    """part / whole in percent, rounded to 2 decimals (half to even, on the exact ratio)."""
    if not whole:
        return None
    return float(round(Decimal(part) * 100 / Decimal(whole), 2))


def _completion_counts(rows: list[dict]) -> dict[str, int]:
    counts = {"finished": 0, "answered": 0, "fallback": 0}
    for row in rows:
        counts["finished"] += row["completions"]
        counts["answered"] += row["completions"] if row["outcome"] in ANSWERED else 0
        counts["fallback"] += row["completions"] if row["fallback_used"] else 0
    return counts


def _attempt_counts(rows: list[dict]) -> dict[str, int]:
    counts = {"attempts": 0, "counted": 0, "errors": 0}
    for row in rows:
        counts["attempts"] += row["attempts"]
        counts["counted"] += row["attempts"] if in_error_rate(row["outcome"]) else 0
        counts["errors"] += row["attempts"] if counts_as_error(row["outcome"]) else 0
    return counts


def reliability_summary(f: Filters) -> dict:
    done = _completion_counts(completion_sums(f, ("outcome", "fallback_used"), measures=COMPLETIONS))
    tried = _attempt_counts(attempt_sums(f, ("outcome",), measures=ATTEMPTS))
    return {
        "requests": done["finished"],
        "answered": done["answered"],
        "success_rate": pct(done["answered"], done["finished"]),
        "fallbacks": done["fallback"],
        "fallback_rate": pct(done["fallback"], done["finished"]),
        "attempts": tried["attempts"],
        "errors": tried["errors"],
        "error_rate": pct(tried["errors"], tried["counted"]),
    }


def rates_series(f: Filters) -> dict:
    """Success, fallback and error rate per time slot (minutes, hours or days by range)."""
    edges = series_edges(f)
    slots = len(edges) - 1
    done = defaultdict(list)
    for row in completion_sums(f, ("outcome", "fallback_used"), series=True, measures=COMPLETIONS):
        done[row["slot"]].append(row)
    tried = defaultdict(list)
    for row in attempt_sums(f, ("outcome",), series=True, measures=ATTEMPTS):
        tried[row["slot"]].append(row)
    series = {"success_rate": [], "fallback_rate": [], "error_rate": [], "requests": [], "attempts": []}
    for slot in range(slots):
        c, a = _completion_counts(done[slot]), _attempt_counts(tried[slot])
        series["success_rate"].append(pct(c["answered"], c["finished"]))
        series["fallback_rate"].append(pct(c["fallback"], c["finished"]))
        series["error_rate"].append(pct(a["errors"], a["counted"]))
        series["requests"].append(c["finished"])
        series["attempts"].append(a["attempts"])
    return {"labels": slot_labels(f, edges), "keys": slot_keys(f, edges), **series}


def attempts_by_provider(f: Filters) -> dict:
    """Attempt counts per provider and outcome, providers by volume, outcomes in DESIGN order."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in attempt_sums(f, ("provider_name", "outcome"), measures=ATTEMPTS):
        counts[row["provider_name"]][row["outcome"]] += row["attempts"]
    providers = sorted(counts, key=lambda name: (-sum(counts[name].values()), name))
    seen = {outcome for per in counts.values() for outcome in per}
    outcomes = [o for o in ATTEMPT_OUTCOMES if o in seen] + sorted(seen - set(ATTEMPT_OUTCOMES))
    return {
        "providers": providers,
        "outcomes": outcomes,
        "counts": {o: [counts[p][o] for p in providers] for o in outcomes},
        "totals": [sum(counts[p].values()) for p in providers],
        "counted": [sum(n for o, n in counts[p].items() if in_error_rate(o)) for p in providers],
    }


def failure_rates_by_provider(f: Filters) -> dict:
    """Per provider and failure class: failures / attempts counted in error rates, in %."""
    data = attempts_by_provider(f)
    classes = [o for o in data["outcomes"] if o in FAILURE_CLASSES and in_error_rate(o)]
    rates = {
        o: [pct(n, whole) for n, whole in zip(data["counts"][o], data["counted"], strict=True)]
        for o in classes
    }
    return {"providers": data["providers"], "classes": classes, "rates": rates, "counts": data["counts"]}


def _step_labels(chain_ids: list[int]) -> dict[tuple[int, int], str]:
    steps = ChainStep.objects.filter(chain_id__in=chain_ids).select_related("provider")
    return {(s.chain_id, s.position): f"{s.provider.name} / {s.model}" for s in steps}


def fallback_funnel(f: Filters) -> dict:
    """Per chain: how many requests each step answered, were cache hits, or went unanswered."""
    per: dict[int, dict] = defaultdict(
        lambda: {"requests": 0, "steps": defaultdict(int), "cache": 0, "none": 0}
    )
    for row in completion_sums(f, ("chain_id", "answered_step", "outcome"), measures=COMPLETIONS):
        chain = per[row["chain_id"]]
        chain["requests"] += row["completions"]
        if row["outcome"] == "cache_hit":
            chain["cache"] += row["completions"]
        elif row["outcome"] == "success" and row["answered_step"] >= 0:
            chain["steps"][row["answered_step"]] += row["completions"]
        else:
            chain["none"] += row["completions"]
    names = dict(FallbackChain.objects.filter(id__in=list(per)).values_list("id", "name"))
    labels = _step_labels(list(per))
    positions = sorted({p for chain in per.values() for p in chain["steps"]})
    chains = []
    for chain_id, chain in sorted(per.items(), key=lambda item: -item[1]["requests"]):
        n = chain["requests"]
        steps = [
            {"position": p, "label": labels.get((chain_id, p), ""), "answered": chain["steps"][p],
             "share": pct(chain["steps"][p], n)}
            for p in positions
        ]  # fmt: skip
        chains.append(
            {
                "chain_id": chain_id,
                "name": names.get(chain_id, f"chain #{chain_id}" if chain_id else "(no chain)"),
                "requests": n,
                "steps": steps,
                "cache_hits": chain["cache"],
                "cache_share": pct(chain["cache"], n),
                "unanswered": chain["none"],
                "unanswered_share": pct(chain["none"], n),
            }
        )
    return {"positions": positions, "chains": chains}
