"""The providers service layer's public surface: what spokes call to write and to run prompts.

Spokes (playground, dashboards, gateway, alerts) import from here, `providers.selectors` (reads),
`providers.types` (results and errors), `providers.models` and `providers.signals`, and
nothing else of `providers` (an import-linter contract in CI holds them to it). The modules
of this package are the hub's insides.
"""

from providers.redaction import redact
from providers.services.breaker import BreakerUnavailable
from providers.services.breaker_controls import circuit_force
from providers.services.budget import budget_usage
from providers.services.completions import complete, complete_sync
from providers.services.faults import FAULT_CHOICES, STREAM_CUT, FaultSpec
from providers.services.health import (
    NOT_A_CALL,
    PROVIDER_FAILURES,
    ProviderHealth,
    health_recent,
    provider_health,
)
from providers.services.health import WINDOW_S as HEALTH_WINDOW_S
from providers.services.image_parts import MEDIA_TYPES as IMAGE_MEDIA_TYPES
from providers.services.image_parts import sniff_media_type
from providers.services.inputs import messages_normalise, params_normalise
from providers.services.ledger import Caller
from providers.services.ledger_wait import completion_timeline_await, ledger_await
from providers.services.lifecycle import service_shutdown, service_start
from providers.services.observe import metrics_exposition
from providers.services.prices import prices_load
from providers.services.recorder import ActivityWindow, ledger_batch, ledger_flush, ledger_lag
from providers.services.simulation import (
    ATTEMPT_FIELDS,
    COMPLETION_FIELDS,
    Behaviour,
    Incident,
    SimRequest,
    ledger_simulate,
    simulation_chains,
)
from providers.services.streaming import stream
from providers.services.webhooks import (
    secret_decrypt,
    secret_encrypt,
    secret_mask,
    webhook_post,
    webhook_url_check,
)

__all__ = [
    "ATTEMPT_FIELDS",
    "COMPLETION_FIELDS",
    "FAULT_CHOICES",
    "HEALTH_WINDOW_S",
    "IMAGE_MEDIA_TYPES",
    "NOT_A_CALL",
    "PROVIDER_FAILURES",
    "STREAM_CUT",
    "ActivityWindow",
    "Behaviour",
    "BreakerUnavailable",
    "Caller",
    "FaultSpec",
    "Incident",
    "ProviderHealth",
    "SimRequest",
    "budget_usage",
    "circuit_force",
    "complete",
    "complete_sync",
    "completion_timeline_await",
    "health_recent",
    "ledger_await",
    "ledger_batch",
    "ledger_flush",
    "ledger_lag",
    "ledger_simulate",
    "messages_normalise",
    "metrics_exposition",
    "params_normalise",
    "prices_load",
    "provider_health",
    "redact",
    "secret_decrypt",
    "secret_encrypt",
    "secret_mask",
    "service_shutdown",
    "service_start",
    "simulation_chains",
    "sniff_media_type",
    "stream",
    "webhook_post",
    "webhook_url_check",
]
