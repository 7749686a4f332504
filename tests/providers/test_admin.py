"""The admin: write-only provider keys, chain step rules, worst case, a read-only ledger."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import messages
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from providers import secrets
from providers.models import Attempt, ChainStep, Completion, FallbackChain, Provider, ProviderKind
from providers.services.plans import chain_plan_build, chain_worst_case
from tests.providers import conftest_admin
from tests.providers.conftest_admin import chain_form_data

# Shared fixtures, bound here so pytest finds them for this module.
allow_local_upstreams = conftest_admin.allow_local_upstreams
provider_key = conftest_admin.provider_key
sim_providers = conftest_admin.sim_providers
three_step_chain = conftest_admin.three_step_chain

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_local_upstreams")]

ADD_PROVIDER = reverse("admin:providers_provider_add")


def provider_data(**overrides: str) -> dict[str, str]:
    data = {
        "name": "local",
        "kind": ProviderKind.OPENAI_COMPATIBLE,
        "base_url": "http://127.0.0.1:11434/v1",
        "enabled": "on",
        "options": "{}",
        "api_key": "",
        "probe_interval_s": "60",  # as the form renders it
    }
    data.update(overrides)
    return data


def stored_key_columns(name: str) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_key_ciphertext, api_key_last4 FROM providers_provider WHERE name = %s", [name]
        )
        return cursor.fetchone()


@pytest.fixture
def keyed_provider(admin_client, provider_key) -> Provider:
    response = admin_client.post(ADD_PROVIDER, provider_data(api_key=provider_key))
    assert response.status_code == 302, response.context["adminform"].form.errors
    return Provider.objects.get(name="local")


# --- providers: the key is write-only ------------------------------------------------------


def test_added_key_is_stored_as_ciphertext_only(keyed_provider, provider_key):
    ciphertext, last4 = stored_key_columns("local")
    assert provider_key not in ciphertext
    assert secrets.decrypt(ciphertext) == provider_key
    assert last4 == provider_key[-4:]


def test_provider_pages_never_render_the_key(admin_client, keyed_provider, provider_key):
    pages = [
        reverse("admin:providers_provider_change", args=[keyed_provider.pk]),
        reverse("admin:providers_provider_changelist"),
        reverse("admin:providers_provider_history", args=[keyed_provider.pk]),
    ]
    for url in pages:
        html = admin_client.get(url).content.decode()
        assert provider_key not in html, url
        assert keyed_provider.api_key_ciphertext not in html, url
    change_page = admin_client.get(pages[0]).content.decode()
    assert "••••" + provider_key[-4:] in change_page


def test_change_history_names_the_key_field_but_never_its_value(admin_client, keyed_provider, provider_key):
    url = reverse("admin:providers_provider_change", args=[keyed_provider.pk])
    new_key = provider_key[::-1] + "X9"
    response = admin_client.post(url, provider_data(api_key=new_key))
    assert response.status_code == 302
    entries = LogEntry.objects.filter(object_id=str(keyed_provider.pk))
    assert entries.count() == 2
    for entry in entries:
        for text in (entry.change_message, entry.get_change_message(), entry.object_repr):
            assert provider_key not in text and new_key not in text
    assert "API key" in entries.order_by("-action_time").first().get_change_message()


def test_blank_key_on_edit_keeps_the_stored_key(admin_client, keyed_provider, provider_key):
    url = reverse("admin:providers_provider_change", args=[keyed_provider.pk])
    response = admin_client.post(url, provider_data(name="local-renamed"))
    assert response.status_code == 302
    keyed_provider.refresh_from_db()
    assert keyed_provider.name == "local-renamed"
    assert keyed_provider.get_api_key() == provider_key


def test_clear_key_checkbox_removes_the_key(admin_client, keyed_provider):
    url = reverse("admin:providers_provider_change", args=[keyed_provider.pk])
    assert admin_client.post(url, provider_data(clear_api_key="on")).status_code == 302
    keyed_provider.refresh_from_db()
    assert not keyed_provider.has_api_key
    assert keyed_provider.api_key_mask == "—"


def test_rejected_form_names_the_url_rule_and_does_not_echo_the_key(admin_client, provider_key):
    response = admin_client.post(
        ADD_PROVIDER, provider_data(base_url="http://10.1.2.3/v1", api_key=provider_key)
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "private address" in html
    assert provider_key not in html
    assert not Provider.objects.exists()


def test_hosted_kind_needs_a_key(admin_client):
    data = provider_data(kind=ProviderKind.OPENAI, base_url="")
    response = admin_client.post(ADD_PROVIDER, data)
    assert response.status_code == 200
    assert "OpenAI providers need an API key." in response.content.decode()


def test_disabling_a_provider_warns_of_the_chains_it_leaves_without_a_usable_step(
    admin_client, three_step_chain, sim_providers
):
    only_a = FallbackChain.objects.create(name="Only A", slug="only-a")
    ChainStep.objects.create(chain=only_a, position=0, provider=sim_providers[0], model="sim-small")
    url = reverse("admin:providers_provider_change", args=[sim_providers[0].pk])
    data = provider_data(name="sim-a", kind=ProviderKind.SIMULATED, base_url="", options='{"latency_ms": 0}')
    del data["enabled"]
    assert warnings_after(admin_client.post(url, data, follow=True)) == [
        "With “sim-a” disabled, these chains have no usable step and every request to them fails "
        "at once: “Only A”. Enable a step of another provider, or this provider again."
    ]  # "Three" still has sim-b and sim-c
    assert warnings_after(admin_client.post(url, {**data, "enabled": "on"}, follow=True)) == []


def warnings_after(response) -> list[str]:
    assert response.redirect_chain, "the form was refused"
    return [m.message for m in response.context["messages"] if m.level == messages.WARNING]


# --- chains: inline rules, drag-and-drop positions, worst case ------------------------------


def test_chain_with_no_enabled_step_is_refused(admin_client, sim_providers):
    steps = [{"provider": sim_providers[0].pk, "model": "sim-small", "enabled": False}]
    response = admin_client.post(
        reverse("admin:providers_fallbackchain_add"), chain_form_data("Off", "off", steps)
    )
    assert response.status_code == 200
    assert "A chain needs at least one enabled step" in response.content.decode()
    assert not FallbackChain.objects.exists()


def test_step_on_a_disabled_provider_is_refused(admin_client, sim_providers):
    Provider.objects.filter(pk=sim_providers[1].pk).update(enabled=False)
    steps = [
        {"provider": sim_providers[0].pk, "model": "sim-small", "enabled": True},
        {"provider": sim_providers[1].pk, "model": "sim-small", "enabled": True},
    ]
    response = admin_client.post(
        reverse("admin:providers_fallbackchain_add"), chain_form_data("X", "x", steps)
    )
    assert response.status_code == 200
    assert "is disabled: enable it or disable this step" in response.content.decode()


def test_step_without_a_model_name_is_refused(admin_client, sim_providers):
    steps = [{"provider": sim_providers[0].pk, "model": "  ", "enabled": True}]
    response = admin_client.post(
        reverse("admin:providers_fallbackchain_add"), chain_form_data("X", "x", steps)
    )
    assert response.status_code == 200
    assert "A step needs a model name." in response.content.decode()


def test_saved_positions_are_renumbered_from_zero(admin_client, three_step_chain):
    steps = list(three_step_chain.steps.order_by("position"))
    # What the drag-and-drop script posts: 1-based positions in the new order (c, a, b).
    new_positions = {steps[2].pk: 1, steps[0].pk: 2, steps[1].pk: 3}
    rows = [
        {"id": s.pk, "chain": three_step_chain.pk, "provider": s.provider_id, "model": s.model}
        | {"enabled": True, "position": new_positions[s.pk]}
        for s in steps
    ]
    data = chain_form_data("Three", "three", rows, initial=3)
    url = reverse("admin:providers_fallbackchain_change", args=[three_step_chain.pk])
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()
    order = list(three_step_chain.steps.order_by("position").values_list("provider__name", "position"))
    assert order == [("sim-c", 0), ("sim-a", 1), ("sim-b", 2)]


def test_ticking_default_moves_it_from_the_old_default(admin_client, ready_chain, sim_providers):
    data = chain_form_data("Two", "two", [{"provider": sim_providers[0].pk, "model": "m", "enabled": True}])
    data["is_default"] = "on"
    response = admin_client.post(reverse("admin:providers_fallbackchain_add"), data, follow=True)
    assert "“Demo” is no longer the default chain." in response.content.decode()
    assert list(FallbackChain.objects.filter(is_default=True).values_list("slug", flat=True)) == ["two"]


def test_chain_page_shows_the_worst_case(admin_client, three_step_chain):
    case = chain_worst_case(chain=three_step_chain)
    html = admin_client.get(reverse("admin:providers_fallbackchain_change", args=[three_step_chain.pk]))
    text = html.content.decode()
    assert f"{case.upstream_calls} upstream calls" in text
    assert f"up to {case.seconds:.1f} s before the caller gets an answer" in text


def test_chain_page_shows_the_stream_worst_case_from_the_timeouts_of_each_step(
    admin_client, three_step_chain
):
    FallbackChain.objects.filter(pk=three_step_chain.pk).update(
        default_retries=0, max_retry_after_s=0, deadline_s=600, first_token_timeout_s=2, idle_timeout_s=3
    )
    ChainStep.objects.filter(chain=three_step_chain, position=0).update(
        first_token_timeout_s=1, idle_timeout_s=9
    )
    html = admin_client.get(reverse("admin:providers_fallbackchain_change", args=[three_step_chain.pk]))
    text = html.content.decode()
    assert "up to 5.0 s before its first token" in text  # 1 + 2 + 2
    assert "at most 9.0 s of silence between events" in text


def test_chain_timeouts_and_step_overrides_are_saved_from_the_admin(admin_client, sim_providers):
    steps = [
        {"provider": sim_providers[0].pk, "model": "m", "enabled": True}
        | {"timeout_s": "4", "first_token_timeout_s": "2.5", "idle_timeout_s": "6"},
        {"provider": sim_providers[1].pk, "model": "m", "enabled": True},
    ]
    data = chain_form_data("Timed", "timed", steps)
    data.update(connect_timeout_s="3", step_timeout_s="20", first_token_timeout_s="7", idle_timeout_s="12")
    response = admin_client.post(reverse("admin:providers_fallbackchain_add"), data)
    assert response.status_code == 302, response.content.decode()
    chain = FallbackChain.objects.get(slug="timed")
    assert (chain.connect_timeout_s, chain.step_timeout_s) == (3, 20)
    assert (chain.first_token_timeout_s, chain.idle_timeout_s) == (7, 12)
    own, blank = chain.steps.order_by("position")
    assert (own.timeout_s, own.first_token_timeout_s, own.idle_timeout_s) == (4, 2.5, 6)
    assert (blank.timeout_s, blank.first_token_timeout_s, blank.idle_timeout_s) == (None, None, None)
    plan = chain_plan_build(chain=chain, with_keys=False)  # what the engine gets: blank is the chain's
    assert plan.connect_timeout_s == 3
    assert [(s.timeout_s, s.first_token_timeout_s, s.idle_timeout_s) for s in plan.steps] == [
        (4, 2.5, 6),
        (20, 7, 12),
    ]
    add_page = admin_client.get(reverse("admin:providers_fallbackchain_add")).content.decode()
    for name in (
        "connect_timeout_s",
        "idle_timeout_s",
        "steps-0-first_token_timeout_s",
        "steps-0-idle_timeout_s",
    ):
        assert f'name="{name}"' in add_page


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connect_timeout_s", "0"),
        ("connect_timeout_s", "61"),
        ("idle_timeout_s", "-1"),
        ("idle_timeout_s", "601"),
        ("steps-0-first_token_timeout_s", "0"),
        ("steps-0-idle_timeout_s", "601"),
    ],
)
def test_timeouts_out_of_range_are_refused(admin_client, sim_providers, field, value):
    data = chain_form_data(
        "Timed", "timed", [{"provider": sim_providers[0].pk, "model": "m", "enabled": True}]
    )
    data[field] = value
    response = admin_client.post(reverse("admin:providers_fallbackchain_add"), data)
    assert response.status_code == 200
    assert "Ensure this value is" in response.content.decode()
    assert not FallbackChain.objects.filter(slug="timed").exists()


def test_chain_page_says_when_no_step_is_usable(admin_client, three_step_chain):
    ChainStep.objects.filter(chain=three_step_chain).update(enabled=False)
    html = admin_client.get(reverse("admin:providers_fallbackchain_change", args=[three_step_chain.pk]))
    assert "No usable step" in html.content.decode()


# --- the ledger is read-only ----------------------------------------------------------------


@pytest.fixture
def recorded(ready_chain, simulated_provider) -> Completion:
    now = timezone.now()
    completion = Completion.objects.create(
        created_at=now, chain=ready_chain, chain_slug="demo", source="api", outcome="success"
    )
    Attempt.objects.create(
        completion=completion,
        started_at=now - dt.timedelta(seconds=1),
        chain=ready_chain,
        source="api",
        step_position=0,
        provider=simulated_provider,
        provider_name=simulated_provider.name,
        provider_kind="simulated",
        model="sim-small",
        outcome="server_error",
        latency_ms=12.0,
    )
    return completion


@pytest.mark.parametrize("model", ["completion", "attempt"])
def test_ledger_cannot_be_added_changed_or_deleted(admin_client, recorded, model):
    pk = recorded.pk if model == "completion" else recorded.attempts.get().pk
    assert admin_client.get(reverse(f"admin:providers_{model}_add")).status_code == 403
    change_url = reverse(f"admin:providers_{model}_change", args=[pk])
    page = admin_client.get(change_url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.post(change_url, {}).status_code == 403
    assert admin_client.post(reverse(f"admin:providers_{model}_delete", args=[pk])).status_code == 403
    assert Completion.objects.count() == 1 and Attempt.objects.count() == 1


def test_completion_page_lists_its_attempts_read_only(admin_client, recorded):
    html = admin_client.get(reverse("admin:providers_completion_change", args=[recorded.pk])).content.decode()
    assert "server_error" in html
    assert 'class="rana-admin-timeline"' in html and 'data-outcome="server_error"' in html
    assert 'name="attempts-' not in html  # shown, not editable: no inline forms


@pytest.mark.parametrize(
    ("query", "found"),
    [("", True), ("outcome__exact=success", True), ("outcome__exact=failed", False)],
)
def test_completion_list_filters(admin_client, recorded, query, found):
    html = admin_client.get(reverse("admin:providers_completion_changelist") + "?" + query).content.decode()
    assert (str(recorded.pk) in html) is found


def test_ledger_search_by_request_id(admin_client, recorded):
    completions = reverse("admin:providers_completion_changelist")
    attempts = reverse("admin:providers_attempt_changelist")
    assert str(recorded.pk) in admin_client.get(completions, {"q": str(recorded.pk)}).content.decode()
    assert "0 results" in admin_client.get(completions, {"q": "not-an-id"}).content.decode()
    attempt = recorded.attempts.get()
    html = admin_client.get(attempts, {"q": recorded.pk.hex}).content.decode()
    assert reverse("admin:providers_attempt_change", args=[attempt.pk]) in html
    assert "0 results" in admin_client.get(attempts, {"q": str(attempt.pk + 1)}).content.decode()


def test_admin_header(admin_client):
    assert "RANA administration" in admin_client.get(reverse("admin:index")).content.decode()
