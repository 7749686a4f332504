"""Rollups: the ledger summed per UTC hour and UTC day, kept up to date three ways.

- Incrementally: providers.services.recorder.write_rows sends ledger_rows_written after each
  committed batch; dashboards.rollups.incremental adds the batch to the hour and day rows in
  one transaction, its rows merged per key and applied in key order (dashboards.rollups.upsert),
  so the writers of several processes never deadlock; a failure is retried, and a batch that
  fails every try has its hours marked for repair (dashboards.rollups.repair) and is logged.
- Periodically, every 10 minutes (Celery beat's `rollups reconcile` schedule, a database row;
  the worker scripts/run starts, or production's, runs it): dashboards.tasks.rollups_reconcile
  rebuilds the last few closed hours and every marked hour from the ledger, repairing anything
  the receiver missed (a batch whose add failed, a process killed between the ledger commit and
  the rollup upsert, a completion rewritten after it was first recorded).
- On demand: `manage.py rana_rollups --since 30d` (or --start/--end) rebuilds a range
  idempotently; rana_synth_ledger builds them after generating a ledger.

Readers (dashboards.selectors.query) never trust a rollup for a part of a range smaller than
its bucket: a range is cut into whole UTC days, whole UTC hours and the raw ledger for the
minutes at either end, so every figure equals the one computed from the raw ledger.
"""
