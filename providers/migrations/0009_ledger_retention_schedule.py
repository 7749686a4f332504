"""Beat schedule: ledger retention daily at 03:30 UTC (django-celery-beat; edit it in the admin).

Made once here rather than at every start, so an operator's change to it (or its removal) stays.
How old a row must be to go is RANA_RETENTION_DAYS, read when the task runs.
"""

from django.db import migrations
from django.utils import timezone

NAME = "ledger retention"


def schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    daily, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "providers.tasks.ledger_retention",
            "crontab": daily,
            "description": "Delete ledger rows older than RANA_RETENTION_DAYS (rollups are kept).",
        },
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})  # beat reloads


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0008_circuit_controls"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
