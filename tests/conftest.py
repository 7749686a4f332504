"""Shared fixtures: users, logged-in clients, a ready chain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers.models import ChainStep, FallbackChain, Provider, ProviderKind
from tests.fakes import FakeUpstream


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "correct-horse-9")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def simulated_provider(db) -> Provider:
    return Provider.objects.create(name="sim-fast", kind=ProviderKind.SIMULATED, options={"latency_ms": 0})


@pytest.fixture
def ready_chain(db, simulated_provider) -> FallbackChain:
    chain = FallbackChain.objects.create(name="Demo", slug="demo", is_default=True)
    ChainStep.objects.create(chain=chain, position=0, provider=simulated_provider, model="sim-small")
    return chain


@pytest.fixture(autouse=True)
def _fresh_circuit_breaker():
    """Circuit state is per process: start every test with every circuit closed."""
    from providers.services.breaker import get_breaker

    get_breaker().reset()
    yield
    get_breaker().reset()


@pytest.fixture(autouse=True)
def _fresh_budget_state():
    """Budget holds (local memory) and counted refusals are per process: none leak across tests."""
    from providers.services.budget_refusals import refusals
    from providers.services.budget_store import store

    yield
    refusals.reset()
    store().reset()


@pytest.fixture
def buffered_ledger(monkeypatch):
    """The ledger as served (write-behind, 50 ms batches) instead of the tests' synchronous one."""
    from providers.services import recorder
    from providers.services.ledger_writer import BufferedRecorder

    buffered = BufferedRecorder(interval_s=0.05)
    monkeypatch.setattr(recorder, "_recorder", buffered)
    yield buffered
    buffered.close()


@pytest.fixture(scope="session")
def _upstream_server() -> Iterator[FakeUpstream]:
    """One fake upstream (models primary and backup) on 127.0.0.1 for the whole run."""
    with FakeUpstream(models=("primary", "backup")) as fake:
        yield fake


@pytest.fixture
def upstream(_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    """The fake upstream with no scripts or recorded requests; its own errors fail the test."""
    _upstream_server.reset()
    yield _upstream_server
    assert not _upstream_server.errors, _upstream_server.errors
    _upstream_server.reset()


BEAT_SCHEDULE_MIGRATIONS = (
    "dashboards.migrations.0002_rollups_reconcile_schedule",
    "alerts.migrations.0002_alerts_evaluate_schedule",
    "providers.migrations.0009_ledger_retention_schedule",
    "providers.migrations.0010_provider_probes",
)


@pytest.fixture
def beat_schedules(db) -> None:
    """The beat schedules as the data migrations made them. A transactional test (a browser
    test's live server) empties every table when it ends, so a test that runs after one in the
    same session would find none: run the migrations' own schedule() again (each idempotent)."""
    import importlib

    from django.apps import apps

    for name in BEAT_SCHEDULE_MIGRATIONS:
        importlib.import_module(name).schedule(apps, None)
