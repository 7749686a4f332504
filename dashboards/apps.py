from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "dashboards"
    verbose_name = "Reliability and cost dashboards"

    def ready(self) -> None:
        from dashboards.rollups.incremental import on_ledger_rows_written
        from providers.signals import ledger_rows_written

        # Rollups follow the ledger as it is written (after each committed batch); the beat
        # schedule (a database row, migration 0002) rebuilds the last closed hours every 10 minutes.
        ledger_rows_written.connect(on_ledger_rows_written, dispatch_uid="dashboards.rollups")
