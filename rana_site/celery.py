"""The Celery app. Without REDIS_URL tasks run in-process (eager), so no broker is needed."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rana_site.settings")

app = Celery("rana")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
