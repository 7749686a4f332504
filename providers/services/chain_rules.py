"""Rules and upkeep for chains and their steps, shared by the admin and configuration import."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from providers.models import ChainStep, FallbackChain, Provider
from providers.models.chain import step_is_usable

NO_ENABLED_STEP = "A chain needs at least one enabled step whose provider is enabled."


@dataclass(frozen=True, slots=True)
class StepDraft:
    """The parts of a step the chain-level rules look at (saved or not)."""

    provider: Provider | None
    enabled: bool


def chain_steps_problem(*, steps: Iterable[StepDraft]) -> str | None:
    """Why a list of steps cannot make a working chain, or None when it can."""
    usable = [s for s in steps if step_is_usable(enabled=s.enabled, provider=s.provider)]
    if not usable:
        return NO_ENABLED_STEP
    return None


@transaction.atomic
def chain_steps_renumber(*, chain: FallbackChain) -> int:
    """Make positions 0, 1, 2 ... in the current order; return how many rows moved.

    The admin's drag-and-drop writes 1-based positions and deletions leave gaps; the
    engine and the ledger count steps from 0.
    """
    moved = 0
    steps = list(ChainStep.objects.select_for_update().filter(chain=chain).order_by("position", "id"))
    for index, step in enumerate(steps):
        if step.position != index:
            step.position = index
            step.save(update_fields=["position"])  # signals fire: cached plans are dropped
            moved += 1
    return moved


def chain_default_claim(*, chain: FallbackChain) -> list[str]:
    """Make room for `chain` to be the default: untick every other default chain.

    Returns the names of the chains that were the default. Call it in the same
    transaction as the save that sets `chain.is_default`.
    """
    others = FallbackChain.objects.filter(is_default=True).exclude(slug=chain.slug)
    if chain.pk is not None:
        others = others.exclude(pk=chain.pk)
    names = list(others.values_list("name", flat=True))
    for other in others.select_for_update():
        other.is_default = False
        other.save(update_fields=["is_default", "updated_at"])
    return names
