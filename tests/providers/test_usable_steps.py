"""One rule for the steps a chain will try: the engine's plan, the admin check, the playground's
fault-injection choices and the dashboards' "first step" all agree."""

from __future__ import annotations

import pytest

from providers.models import ChainStep, FallbackChain, Provider
from providers.selectors import chain_usable_steps
from providers.services.chain_rules import StepDraft, chain_steps_problem
from providers.services.plans import chain_plan_build

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain():
    on = Provider.objects.create(name="on", kind="simulated")
    off = Provider.objects.create(name="off", kind="simulated", enabled=False)
    chain = FallbackChain.objects.create(name="c", slug="c")
    ChainStep.objects.create(chain=chain, position=0, provider=on, model="disabled-step", enabled=False)
    ChainStep.objects.bulk_create(
        [ChainStep(chain=chain, position=1, provider=off, model="disabled-provider")]
    )
    ChainStep.objects.create(chain=chain, position=2, provider=on, model="usable")
    return chain


def test_every_reader_of_a_chain_sees_the_same_usable_steps(chain):
    from dashboards.selectors.cost import _first_steps
    from playground.selectors import chain_steps

    assert [s.model for s in chain_usable_steps(slug="c")[chain.pk]] == ["usable"]
    assert [s.model for s in chain_plan_build(chain=chain, with_keys=False).steps] == ["usable"]
    assert [label for _, label in chain_steps("c")] == ["Step 1 · on / usable"]
    assert _first_steps([chain.pk])[chain.pk].model == "usable"
    drafts = [StepDraft(provider=s.provider, enabled=s.enabled) for s in chain.steps.all()]
    assert chain_steps_problem(steps=drafts) is None
    assert chain_steps_problem(steps=drafts[:2]) is not None  # only unusable steps
