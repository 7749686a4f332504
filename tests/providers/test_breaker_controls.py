"""Operators' hands on circuits (circuit_force) and the circuits as a status page lists them
(circuit_status); with the circuits in this process and in Redis."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache

from providers.engine.plan import StepPlan
from providers.models import ChainStep, CircuitAction, FallbackChain, Provider
from providers.selectors import circuit_status
from providers.services import BreakerUnavailable, circuit_force
from providers.services.breaker import get_breaker
from providers.services.plans import provider_config
from tests.fakes.upstream import refused_port
from tests.providers.breaker_fixtures import poll, record, shared_circuits
from tests.servers import server_url

pytestmark = pytest.mark.django_db

BACKENDS = ["locmem", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def backend(request, settings):
    """The cache, and so where the circuits live: this process, or Redis (every process)."""
    if request.param == "redis":
        settings.CACHES = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": server_url("RANA_TEST_REDIS_URL"),
                "KEY_PREFIX": f"rana-circuits-{uuid.uuid4().hex[:8]}",
            }
        }
    yield request.param
    get_breaker().reset()
    if request.param == "redis":
        cache.delete_pattern("*")


@pytest.fixture
def step_row(db) -> ChainStep:
    provider = Provider.objects.create(name="acme", kind="simulated")
    chain = FallbackChain.objects.create(name="c", slug="c")
    return ChainStep.objects.create(chain=chain, position=0, provider=provider, model="m1")


def plan_of(step: ChainStep) -> StepPlan:
    return StepPlan(0, provider_config(step.provider), step.model, retries=0, timeout_s=1, backoff_base_s=0)


def test_a_circuit_opened_by_hand_is_skipped_and_recorded_with_who_and_when(backend, step_row, admin_user):
    action = circuit_force(provider_id=step_row.provider_id, model="m1", action="open", user=admin_user)
    assert (action.action, action.username, action.user) == ("open", "admin", admin_user)
    assert get_breaker().is_open(plan_of(step_row))
    (row,) = circuit_status()
    assert (row["provider_name"], row["model"]) == ("acme", "m1")
    assert (row["state"], row["reason"]) == ("open", "manual")
    assert row["last_action"] == {"action": "open", "username": "admin", "at": action.created_at}
    assert row["changed_at"] is not None and row["manual"] is True


def test_closing_and_resetting_by_hand(backend, step_row, admin_user):
    for _ in range(5):
        get_breaker().record(record("server_error", provider_id=step_row.provider_id, model="m1"))
    assert get_breaker().is_open(plan_of(step_row))
    circuit_force(provider_id=step_row.provider_id, model="m1", action="close", user=admin_user)
    assert not get_breaker().is_open(plan_of(step_row))
    (row,) = circuit_status()
    assert (row["state"], row["consecutive_failures"], row["last_action"]["action"]) == ("closed", 0, "close")
    circuit_force(provider_id=step_row.provider_id, model="m1", action="reset", user=None)
    (row,) = circuit_status()  # the step's circuit is still listed, as new
    assert (row["state"], row["changed_at"], row["last_action"]["username"]) == ("closed", None, "")
    assert CircuitAction.objects.count() == 2


def test_status_lists_every_step_of_every_chain_and_circuits_the_breaker_knows(backend, step_row):
    other = Provider.objects.create(name="other", kind="simulated")
    get_breaker().record(record("auth_error", provider_id=other.pk, model="gone"))
    get_breaker().flush()
    rows = [(r["provider_name"], r["model"], r["state"]) for r in circuit_status()]
    assert rows == [("acme", "m1", "closed"), ("other", "gone", "open")]


def test_unknown_actions_and_providers_are_refused(step_row):
    with pytest.raises(ValueError, match="unknown circuit action"):
        circuit_force(provider_id=step_row.provider_id, model="m1", action="toggle", user=None)
    with pytest.raises(ValueError, match="no provider"):
        circuit_force(provider_id=10_000, model="m1", action="open", user=None)
    assert not CircuitAction.objects.exists()


@pytest.mark.redis
@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_a_manual_open_reaches_another_process_at_once(backend, step_row, admin_user):
    make_key = cache.client.make_key
    other = shared_circuits(lambda: 0.0, "", make_key=lambda name: str(make_key(name)))  # this site's keys
    try:
        key = (step_row.provider_id, "m1")
        assert other.admit(key, 60, 0.0) == (True, None)  # its mirror is kept from here on
        circuit_force(provider_id=step_row.provider_id, model="m1", action="open", user=admin_user)
        assert poll(lambda: other.admit(key, 60, 0.0) == (False, None), timeout=1.0)
    finally:
        other.close()


def test_a_manual_change_with_redis_away_is_refused_and_not_recorded(settings, step_row, admin_user):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{refused_port()}/0",
            "KEY_PREFIX": "rana-away",
        }
    }
    try:
        with pytest.raises(BreakerUnavailable):
            circuit_force(provider_id=step_row.provider_id, model="m1", action="open", user=admin_user)
        assert not CircuitAction.objects.exists()
    finally:
        get_breaker().reset()
