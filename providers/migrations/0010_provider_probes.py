"""Health probes: per provider, on or off, an interval and a model; and the beat schedule that
sends the probes due every 10 s (django-celery-beat; edit it in the admin).

The schedule is made once here rather than at every start, so an operator's change to it (or
its removal) stays. Which providers are due is decided when the task runs (probe_interval_s).
"""

import django.core.validators
from django.db import migrations, models
from django.utils import timezone

NAME = "health probes"


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    every_10_s, _ = IntervalSchedule.objects.get_or_create(every=10, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "providers.tasks.probes_run",
            "interval": every_10_s,
            "expire_seconds": 10,  # a tick still queued when the next is sent is dropped: that one probes
            "description": "Probe the providers whose health probe is due (Provider.probe_enabled).",
        },
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})  # beat reloads


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0009_ledger_retention_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AddField(
            model_name="provider",
            name="last_probe_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="provider",
            name="probe_enabled",
            field=models.BooleanField(
                default=False,
                help_text="Send this provider a one-token request on a schedule.",
                verbose_name="health probes",
            ),
        ),
        migrations.AddField(
            model_name="provider",
            name="probe_interval_s",
            field=models.PositiveIntegerField(
                default=60,
                help_text="Seconds between probes (at least 10).",
                validators=[django.core.validators.MinValueValidator(10)],
                verbose_name="probe interval (s)",
            ),
        ),
        migrations.AddField(
            model_name="provider",
            name="probe_model",
            field=models.CharField(
                blank=True,
                help_text="The model probed. Left blank: the model of this provider's first chain step.",
                max_length=200,
            ),
        ),
        migrations.RunPython(schedule, unschedule),
    ]
