"""Signals other apps may listen to. Receivers run after the fact and never break a request."""

from django.dispatch import Signal

# sender=None; kwargs: request_id, chain_slug, from_step, to_step, error (ProviderError)
fallback_happened = Signal()

# sender=None; kwargs: completion (providers.models.Completion, as recorded), attempts (list)
completion_recorded = Signal()

# sender=None; kwargs: rows (list of the Completion and Attempt instances just written).
# Sent by providers.services.recorder.write_rows once its transaction has committed, and only
# when a receiver is connected (the dashboards' rollups listen). Receivers must not raise.
ledger_rows_written = Signal()
