"""Health probes: which are due (claimed once however many callers race), a probe against the
fake upstream recorded as a `probe` completion and attempt, the breaker told, the admin and the
configuration file carrying the settings."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from providers.models import Attempt, ChainStep, Completion, FallbackChain, Provider, ProviderKind
from providers.services.breaker import get_breaker
from providers.services.config_io import ConfigImportError, config_export, config_import
from providers.services.health import provider_health
from providers.services.probes import probe_model, probes_claim, probes_send_due
from providers.tasks import probes_run
from tests.fakes import Fault
from tests.providers.test_admin import provider_data

pytestmark = pytest.mark.django_db(transaction=True)

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _probed(upstream, name: str = "fake", **fields) -> Provider:
    return Provider.objects.create(
        name=name,
        kind=ProviderKind.OPENAI_COMPATIBLE,
        base_url=upstream.base_url_for("openai_compatible"),
        probe_enabled=True,
        probe_model="primary",
        **fields,
    )


def _circuit(provider: Provider) -> str:
    rows = [r for r in get_breaker().states() if r["provider_id"] == provider.pk and r["model"] == "primary"]
    return rows[0]["state"] if rows else "closed"


def test_two_callers_at_once_claim_each_due_probe_exactly_once():
    ids = {Provider.objects.create(name=f"p{i}", kind="simulated", probe_enabled=True).pk for i in range(6)}
    Provider.objects.create(name="off", kind="simulated")  # probes off: never due
    start, claimed = threading.Barrier(2), []

    def claim() -> None:
        try:
            start.wait()
            claimed.append(probes_claim(now=T0))
        finally:
            connection.close()

    callers = [threading.Thread(target=claim) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    first, second = claimed
    assert set(first) | set(second) == ids and not set(first) & set(second)
    assert probes_claim(now=T0 + dt.timedelta(seconds=30)) == []  # not due before its 60 s
    assert set(probes_claim(now=T0 + dt.timedelta(seconds=60))) == ids


def test_the_model_probed_defaults_to_the_providers_first_chain_step(db):
    provider = Provider.objects.create(name="p", kind="simulated")
    assert probe_model(provider) == ""
    chain = FallbackChain.objects.create(name="Main", slug="main")
    ChainStep.objects.create(chain=chain, position=1, provider=provider, model="later")
    ChainStep.objects.create(chain=chain, position=0, provider=provider, model="first")
    assert probe_model(provider) == "first"
    provider.probe_model = "chosen"
    assert probe_model(provider) == "chosen"


def test_a_probe_sends_one_token_to_one_provider_and_records_a_probe_completion(upstream):
    provider = _probed(upstream)
    [report] = probes_send_due(now=T0)
    assert (report.provider_id, report.model, report.outcome) == (provider.pk, "primary", "success")
    sent = upstream.last_request.json
    assert (sent["model"], sent["max_tokens"], len(sent["messages"])) == ("primary", 1, 1)
    completion = Completion.objects.get(id=report.request_id)
    assert (completion.source, completion.outcome, completion.chain_id) == ("probe", "success", None)
    assert completion.answered_provider_id == provider.pk
    attempt = Attempt.objects.get(completion=completion)
    assert (attempt.source, attempt.provider_id, attempt.model, attempt.outcome) == (
        "probe",
        provider.pk,
        "primary",
        "success",
    )
    [health] = provider_health()
    assert (health.provider_id, health.calls, health.score) == (provider.pk, 1, 100)
    assert probes_send_due(now=T0 + dt.timedelta(seconds=5)) == []  # claimed: not due again yet


def test_failing_probes_open_the_circuit_and_a_successful_probe_closes_it(upstream, settings):
    settings.RANA_BREAKER_THRESHOLD = 2
    provider = _probed(upstream, probe_interval_s=10)
    upstream.script(None, [Fault.error("server_error"), Fault.error("server_error")])
    outcomes = [probes_send_due(now=T0 + dt.timedelta(seconds=10 * i))[0].outcome for i in range(2)]
    assert outcomes == ["server_error", "server_error"]
    assert _circuit(provider) == "open"
    failed = Completion.objects.filter(source="probe", outcome="failed")
    assert failed.count() == 2 and {c.error_class for c in failed} == {"server_error"}

    # the circuit is open (its cooldown still runs): the probe goes anyway, and its success closes it
    [report] = probes_send_due(now=T0 + dt.timedelta(seconds=20))
    assert report.outcome == "success" and len(upstream.requests) == 3
    assert _circuit(provider) == "closed"
    assert list(Attempt.objects.order_by("started_at").values_list("source", "outcome")) == [
        ("probe", "server_error"),
        ("probe", "server_error"),
        ("probe", "success"),
    ]


def test_probe_settings_are_edited_in_the_admin(admin_client):
    url = reverse("admin:providers_provider_add")
    data = provider_data(probe_enabled="on", probe_interval_s="30", probe_model="llama3")
    assert admin_client.post(url, data).status_code == 302
    provider = Provider.objects.get(name="local")
    assert (provider.probe_enabled, provider.probe_interval_s, provider.probe_model) == (True, 30, "llama3")
    response = admin_client.post(url, provider_data(name="fast", probe_interval_s="5"))
    assert response.status_code == 200 and "greater than or equal to 10" in response.content.decode()


def test_probe_settings_round_trip_through_the_configuration_file(db):
    Provider.objects.create(
        name="local", kind="simulated", probe_enabled=True, probe_interval_s=45, probe_model="sim-small"
    )
    text = config_export()
    assert (
        "probe_enabled: true" in text and "probe_interval_s: 45" in text and "probe_model: sim-small" in text
    )
    Provider.objects.all().delete()
    assert config_import(text=text, filename="rana.yaml").created["providers"] == 1
    provider = Provider.objects.get(name="local")
    assert (provider.probe_enabled, provider.probe_interval_s, provider.probe_model) == (
        True,
        45,
        "sim-small",
    )
    assert config_export() == text
    with pytest.raises(ConfigImportError, match=r"providers\[0\]\.probe_interval_s"):
        config_import(text=text.replace("probe_interval_s: 45", "probe_interval_s: 5"), filename="rana.yaml")


def test_a_disabled_provider_is_not_probed(upstream):
    _probed(upstream, enabled=False)
    assert probes_send_due(now=timezone.now()) == [] and not upstream.requests


@pytest.mark.django_db
def test_the_task_is_scheduled_every_10_s_and_probes_nothing_when_none_is_due(beat_schedules):
    task = PeriodicTask.objects.get(name="health probes")
    assert task.task == "providers.tasks.probes_run" and task.enabled
    assert (task.interval.every, task.interval.period, task.expire_seconds) == (10, "seconds", 10)
    assert probes_run.delay().get() == []
