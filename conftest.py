"""Test-run environment, set before Django starts (settings read it once)."""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("RANA_ALLOWED_UPSTREAM_HOSTS", "127.0.0.1,localhost")
os.environ.setdefault("RANA_LEDGER_MODE", "sync")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
os.environ.setdefault("RANA_STATICFILES_STORAGE", "django.contrib.staticfiles.storage.StaticFilesStorage")
