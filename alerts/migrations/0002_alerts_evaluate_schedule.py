"""Beat schedule: evaluate the alert rules every 30 seconds (django-celery-beat; edit it in the admin).

Made once here rather than at every start, so an operator's change to it (or its removal) stays.
"""

from django.db import migrations
from django.utils import timezone

NAME = "alerts evaluate"


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    every_30s, _ = IntervalSchedule.objects.get_or_create(every=30, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "alerts.tasks.alerts_evaluate",
            "interval": every_30s,
            "expire_seconds": 25,  # a run beat sent while no worker was there is not worth running late
            "description": "Check every enabled alert rule; fire events and queue their deliveries.",
        },
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})  # beat reloads


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
