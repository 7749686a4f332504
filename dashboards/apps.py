from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "dashboards"
    verbose_name = "Reliability and cost dashboards"

    def ready(self) -> None:
        from dashboards.rollups.incremental import on_ledger_rows_written
        from dashboards.tasks import EVERY_S
        from providers.signals import ledger_rows_written
        from rana_site.celery import app

        # Rollups follow the ledger as it is written (after each committed batch) ...
        ledger_rows_written.connect(on_ledger_rows_written, dispatch_uid="dashboards.rollups")
        # ... and Celery beat (where one runs) rebuilds the last closed hours, repairing anything missed.
        app.conf.beat_schedule = {
            **(app.conf.beat_schedule or {}),
            "dashboards-rollups-reconcile": {
                "task": "dashboards.tasks.rollups_reconcile",
                "schedule": EVERY_S,
            },
        }
