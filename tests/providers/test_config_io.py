"""Configuration as code: export and import round-trip, env: keys, located errors."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from providers.models import ChainStep, FallbackChain, ModelPrice, Provider, ProviderKind
from providers.services.config_io import ConfigImportError, config_export, config_import
from tests.providers import conftest_admin

# Shared fixtures, bound here so pytest finds them for this module.
allow_local_upstreams = conftest_admin.allow_local_upstreams
provider_key = conftest_admin.provider_key

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_local_upstreams")]

KEY_VAR = "RANA_TEST_LOCAL_KEY"


@pytest.fixture
def configured(monkeypatch, provider_key) -> None:
    """Providers (one keyed from the environment), two prices, two chains."""
    monkeypatch.setenv(KEY_VAR, provider_key)
    local = Provider(name="local", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="http://127.0.0.1:11434/v1")
    local.set_api_key(provider_key, source=f"env:{KEY_VAR}")
    local.save()
    admin_keyed = Provider(name="typed-in", kind=ProviderKind.OPENAI)
    admin_keyed.set_api_key("sk-typed-in-the-admin-0123456789")
    admin_keyed.save()
    sim = Provider.objects.create(
        name="sim", kind=ProviderKind.SIMULATED, options={"latency_ms": 5, "seed": 1}
    )
    ModelPrice.objects.create(
        provider_kind="simulated",
        model="sim-small",
        input_per_mtok=Decimal("0.2"),
        output_per_mtok=Decimal("0.8"),
        cached_input_per_mtok=Decimal("0.05"),
        context_window=32768,
        effective_from=dt.date(2025, 1, 1),
    )
    ModelPrice.objects.create(
        provider_kind="openai",
        model="gpt-5",
        input_per_mtok=Decimal("1.25"),
        output_per_mtok=Decimal("10"),
        effective_from=dt.date(2025, 8, 7),
    )
    main = FallbackChain.objects.create(
        name="Main",
        slug="main",
        is_default=True,
        daily_budget_usd=Decimal("12.5"),
        connect_timeout_s=2.5,
        idle_timeout_s=20,
    )
    ChainStep.objects.create(
        chain=main,
        position=0,
        provider=local,
        model="llama3",
        timeout_s=4.5,
        first_token_timeout_s=3,
        idle_timeout_s=7.5,
    )
    ChainStep.objects.create(chain=main, position=1, provider=sim, model="sim-small", retries=0)
    other = FallbackChain.objects.create(name="Other", slug="other", cache_ttl_s=60)
    ChainStep.objects.create(chain=other, position=0, provider=sim, model="sim-small", enabled=True)


def snapshot() -> dict:
    """Every row's update stamp and the row counts: equal before and after means nothing changed."""
    return {
        "providers": list(
            Provider.objects.order_by("pk").values_list("pk", "updated_at", "api_key_ciphertext")
        ),
        "chains": list(FallbackChain.objects.order_by("pk").values_list("pk", "updated_at", "is_default")),
        "steps": list(ChainStep.objects.order_by("pk").values_list("pk", "position", "provider_id", "model")),
        "prices": list(ModelPrice.objects.order_by("pk").values()),
    }


def test_export_import_export_round_trips_without_changing_anything(configured):
    first = config_export()
    before = snapshot()
    report = config_import(text=first, filename="rana.yaml")
    assert not report.changed
    assert report.unchanged == {"providers": 3, "prices": 2, "chains": 2}
    assert config_export() == first
    assert snapshot() == before


def test_timeouts_travel_in_the_file_and_a_step_without_its_own_takes_the_chains(configured):
    text = config_export()
    for line in ("connect_timeout_s: 2.5", "idle_timeout_s: 20.0", "first_token_timeout_s: 3.0"):
        assert line in text
    FallbackChain.objects.filter(slug="main").update(connect_timeout_s=9, idle_timeout_s=9)
    ChainStep.objects.filter(model="llama3").update(first_token_timeout_s=None, idle_timeout_s=1)
    assert config_import(text=text, filename="rana.yaml").updated["chains"] == 1
    main = FallbackChain.objects.get(slug="main")
    assert (main.connect_timeout_s, main.idle_timeout_s) == (2.5, 20)
    step = main.steps.get(model="llama3")
    assert (step.timeout_s, step.first_token_timeout_s, step.idle_timeout_s) == (4.5, 3, 7.5)
    bare = text.replace("    first_token_timeout_s: 3.0\n    idle_timeout_s: 7.5\n", "")
    assert bare != text
    config_import(text=bare, filename="rana.yaml")
    step.refresh_from_db()
    assert (step.first_token_timeout_s, step.idle_timeout_s) == (None, None)


def test_strategies_and_weights_round_trip(configured):
    main = FallbackChain.objects.get(slug="main")
    FallbackChain.objects.filter(pk=main.pk).update(strategy="weighted")
    ChainStep.objects.filter(chain=main, position=0).update(weight=3)
    text = config_export()
    assert "strategy: weighted" in text and "weight: 3" in text
    ChainStep.objects.all().delete()
    FallbackChain.objects.all().delete()
    report = config_import(text=text, filename="rana.yaml")
    assert report.created["chains"] == 2
    main = FallbackChain.objects.get(slug="main")
    assert main.strategy == "weighted"
    assert list(main.steps.order_by("position").values_list("weight", flat=True)) == [3, 1]
    assert FallbackChain.objects.get(slug="other").strategy == "ordered"
    assert config_export() == text


def test_a_file_without_strategy_or_weight_keeps_the_defaults(configured):
    text = "chains:\n  - {name: New, slug: new, steps: [{provider: sim, model: sim-small}]}\n"
    config_import(text=text, filename="rana.yaml")
    new = FallbackChain.objects.get(slug="new")
    assert new.strategy == "ordered" and new.steps.get().weight == 1


def test_export_never_holds_a_key_only_its_env_source(configured, provider_key):
    text = config_export()
    assert f"api_key: env:{KEY_VAR}" in text
    assert provider_key not in text
    assert "sk-typed-in" not in text
    for provider in Provider.objects.all():
        assert provider.api_key_ciphertext not in text or not provider.api_key_ciphertext


def test_import_into_an_empty_database_rebuilds_the_same_configuration(configured, provider_key):
    text = config_export()
    ChainStep.objects.all().delete()
    FallbackChain.objects.all().delete()
    Provider.objects.all().delete()
    ModelPrice.objects.all().delete()
    report = config_import(text=text, filename="rana.yaml")
    assert report.created == {"providers": 3, "prices": 2, "chains": 2}
    assert config_export() == text
    assert Provider.objects.get(name="local").get_api_key() == provider_key
    assert not Provider.objects.get(name="typed-in").has_api_key  # its key was never exported


def test_env_key_is_read_from_the_environment_and_rewritten_only_when_it_changes(monkeypatch, configured):
    text = config_export()
    monkeypatch.setenv(KEY_VAR, "sk-rotated-upstream-key-0123456789")
    report = config_import(text=text, filename="rana.yaml")
    assert report.updated["providers"] == 1
    local = Provider.objects.get(name="local")
    assert local.get_api_key() == "sk-rotated-upstream-key-0123456789"
    assert local.api_key_source == f"env:{KEY_VAR}"
    stamp = local.updated_at
    assert not config_import(text=text, filename="rana.yaml").changed
    local.refresh_from_db()
    assert local.updated_at == stamp


def test_plaintext_key_is_accepted_with_a_warning_that_hides_it(db):
    key = "sk-plaintext-in-a-file-0123456789"
    text = f"providers:\n  - {{name: p, kind: openai, api_key: {key}}}\n"
    report = config_import(text=text, filename="keys.yaml")
    assert Provider.objects.get(name="p").get_api_key() == key
    assert report.warnings and "keys.yaml: providers[0].api_key: " in report.warnings[0]
    assert "env:VARIABLE_NAME" in report.warnings[0]
    assert key not in " ".join(report.warnings)
    assert key not in config_export()


VALID_HEAD = """\
providers:
  - {name: fresh, kind: simulated}
"""

BAD_FILES = [
    pytest.param(
        "providers: [\n  - {name: x\n", "conf.yaml: line 2, column 3: YAML syntax error", id="yaml-syntax"
    ),
    pytest.param(
        VALID_HEAD + "chains:\n  - name: C\n    slug: c\n    steps:\n      - {provider: fresh, model: m}\n"
        "      - {provider: ghost, model: m}\n",
        "conf.yaml: chains[0].steps[1].provider: no provider named 'ghost'",
        id="unknown-provider",
    ),
    pytest.param(
        VALID_HEAD + "  - {name: odd, kind: carrier-pigeon}\n",
        "conf.yaml: providers[1].kind: unknown kind 'carrier-pigeon'",
        id="bad-kind",
    ),
    pytest.param(
        VALID_HEAD + "  - {name: k, kind: openai, api_key: env:RANA_TEST_UNSET_VARIABLE}\n",
        "conf.yaml: providers[1].api_key: environment variable RANA_TEST_UNSET_VARIABLE is not set",
        id="missing-env-var",
    ),
    pytest.param(
        VALID_HEAD + "  - {name: lan, kind: openai_compatible, base_url: 'http://10.0.0.7/v1'}\n",
        "conf.yaml: providers[1].base_url: host '10.0.0.7' is a private address",
        id="private-base-url",
    ),
    pytest.param(
        VALID_HEAD
        + "chains:\n  - {name: A, slug: a, is_default: true, steps: [{provider: fresh, model: m}]}\n"
        "  - {name: B, slug: b, is_default: true, steps: [{provider: fresh, model: m}]}\n",
        "conf.yaml: chains[1].is_default: only one chain can be the default (chains[0] is already)",
        id="two-defaults",
    ),
    pytest.param(
        VALID_HEAD
        + "chains:\n  - {name: A, slug: a, steps: [{provider: fresh, model: m, enabled: false}]}\n",
        "conf.yaml: chains[0].steps: A chain needs at least one enabled step",
        id="no-enabled-step",
    ),
    pytest.param(
        VALID_HEAD
        + "prices:\n  - {provider_kind: openai, model: m, effective_from: soon, input_per_mtok: 1}\n",
        "conf.yaml: prices[0].effective_from: expected a date",
        id="bad-date",
    ),
    pytest.param(
        VALID_HEAD
        + "chains:\n  - {name: A, slug: a, connect_timeout_s: 0, steps: [{provider: fresh, model: m}]}\n",
        "conf.yaml: chains[0].connect_timeout_s: Ensure this value is greater than or equal to 0.1.",
        id="connect-timeout-zero",
    ),
    pytest.param(
        VALID_HEAD
        + "chains:\n  - {name: A, slug: a, steps: [{provider: fresh, model: m, idle_timeout_s: 601}]}\n",
        "conf.yaml: chains[0].steps[0].idle_timeout_s: Ensure this value is less than or equal to 600.",
        id="step-idle-timeout-too-long",
    ),
    pytest.param(
        VALID_HEAD
        + "chains:\n  - {name: A, slug: a, strategy: fastest, steps: [{provider: fresh, model: m}]}\n",
        "conf.yaml: chains[0].strategy: Value 'fastest' is not a valid choice.",
        id="unknown-strategy",
    ),
    pytest.param(
        VALID_HEAD
        + "chains:\n  - {name: A, slug: a, body_logging: everything, steps: [{provider: fresh, model: m}]}\n",
        "conf.yaml: chains[0].body_logging: Value 'everything' is not a valid choice.",
        id="unknown-body-logging",
    ),
    pytest.param(
        VALID_HEAD
        + "chains:\n  - {name: A, slug: a, body_log_chars: 0, steps: [{provider: fresh, model: m}]}\n",
        "conf.yaml: chains[0].body_log_chars:",
        id="body-log-chars-zero",
    ),
    pytest.param(
        VALID_HEAD + "chains:\n  - {name: A, slug: a, steps: [{provider: fresh, model: m, weight: -1}]}\n",
        "conf.yaml: chains[0].steps[0].weight:",
        id="negative-weight",
    ),
    pytest.param(
        VALID_HEAD + "  - {name: typo, kind: simulated, enabeld: true}\n",
        "conf.yaml: providers[1].enabeld: unknown field",
        id="unknown-field",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_file_is_refused_with_a_located_error_and_changes_nothing(configured, text, message):
    before, exported = snapshot(), config_export()
    with pytest.raises(ConfigImportError) as info:
        config_import(text=text, filename="conf.yaml")
    assert message in str(info.value)
    assert snapshot() == before
    assert config_export() == exported
    assert not Provider.objects.filter(name="fresh").exists()


def test_command_exports_to_a_file_and_imports_it(configured, tmp_path):
    path = tmp_path / "rana.yaml"
    call_command("rana_config", "export", "--output", str(path), stderr=io.StringIO())
    out = io.StringIO()
    call_command("rana_config", "import", str(path), stdout=out)
    assert "Nothing to change" in out.getvalue()
    assert path.read_text() == config_export()


def test_command_reports_errors_and_says_nothing_changed(db, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("providers:\n  - {name: x, kind: nope}\n")
    with pytest.raises(CommandError) as info:
        call_command("rana_config", "import", str(path))
    assert "Nothing was changed." in str(info.value)
    assert f"{path}: providers[0].kind" in str(info.value)


def test_body_logging_travels_in_the_file(configured):
    FallbackChain.objects.filter(slug="main").update(body_logging="first_chars", body_log_chars=300)
    text = config_export()
    assert "body_logging: first_chars" in text and "body_log_chars: 300" in text
    FallbackChain.objects.filter(slug="main").update(body_logging="off", body_log_chars=2000)
    assert config_import(text=text, filename="rana.yaml").updated["chains"] == 1
    main = FallbackChain.objects.get(slug="main")
    assert (main.body_logging, main.body_log_chars) == ("first_chars", 300)
