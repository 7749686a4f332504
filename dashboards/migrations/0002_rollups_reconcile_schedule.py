"""Beat schedule: the rollup reconcile every 10 minutes (django-celery-beat; edit it in the admin).

Made once here rather than at every start, so an operator's change to it (or its removal) stays.
"""

from django.db import migrations
from django.utils import timezone

NAME = "rollups reconcile"


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    every, _ = IntervalSchedule.objects.get_or_create(every=10, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "dashboards.tasks.rollups_reconcile",
            "interval": every,
            "description": "Rebuild the last closed hours of the rollups, and every hour marked for repair.",
        },
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})  # beat reloads


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dashboards", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
