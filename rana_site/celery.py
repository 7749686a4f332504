"""The Celery app: `celery -A rana_site worker` runs the tasks, `celery -A rana_site beat` sends
the scheduled ones (scripts/run starts a worker with beat embedded). Configured from the
settings' CELERY_* values: Redis as broker with REDIS_URL, else folders on this machine
(rana_site/broker_fs.py)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rana_site.settings")

app = Celery("rana")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
