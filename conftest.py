"""Test-run configuration.

Environment defaults are for subprocesses the tests start (manage.py, servers); the same
values are set on Django's settings directly, since pytest-django may read the settings
before this file is imported.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

TEST_ENV = {
    "DEBUG": "1",
    "RANA_ALLOWED_UPSTREAM_HOSTS": "127.0.0.1,localhost",
    "RANA_ALLOWED_WEBHOOK_HOSTS": "127.0.0.1",
    "RANA_LEDGER_MODE": "sync",
    "CELERY_TASK_ALWAYS_EAGER": "1",
    "RANA_STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
}
for _name, _value in TEST_ENV.items():
    os.environ.setdefault(_name, _value)
# Ledger journals and Celery's broker folders of this run (the live servers and workers it
# starts inherit them), never the project's var/. Tasks run eagerly, in the test's process,
# except in the tests that start a real worker (tests/celery_worker.py).
os.environ.setdefault("RANA_JOURNAL_DIR", tempfile.mkdtemp(prefix="rana-test-journal-"))
os.environ.setdefault("RANA_CELERY_DIR", tempfile.mkdtemp(prefix="rana-test-celery-"))


_SQLITE_TEST_DIR: str | None = None


def _sqlite_test_database_on_disk(settings) -> None:
    """Test on a SQLite file, as RANA runs, not Django's shared-cache in-memory default.

    Shared-cache mode locks whole tables and answers a conflicting write from another thread
    with "database table is locked" at once (no busy timeout applies), so concurrent writers
    that production handles fine (WAL, busy timeout, immediate transactions) fail at random.
    """
    global _SQLITE_TEST_DIR
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return
    _SQLITE_TEST_DIR = tempfile.mkdtemp(prefix="rana-test-db-")
    database.setdefault("TEST", {})["NAME"] = os.path.join(_SQLITE_TEST_DIR, "test.sqlite3")


def pytest_configure(config):
    from django.conf import settings

    from rana_site import broker_fs

    _sqlite_test_database_on_disk(settings)

    settings.RANA_ALLOWED_UPSTREAM_HOSTS = os.environ["RANA_ALLOWED_UPSTREAM_HOSTS"].split(",")
    settings.RANA_ALLOWED_WEBHOOK_HOSTS = os.environ["RANA_ALLOWED_WEBHOOK_HOSTS"].split(",")
    settings.RANA_LEDGER_MODE = os.environ["RANA_LEDGER_MODE"]
    settings.RANA_JOURNAL_DIR = os.environ["RANA_JOURNAL_DIR"]
    settings.RANA_CELERY_DIR = Path(os.environ["RANA_CELERY_DIR"])
    if getattr(settings, "CELERY_BROKER_TRANSPORT", "") == "rana_site.broker_fs:Transport":
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = broker_fs.transport_options(settings.RANA_CELERY_DIR)
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": os.environ["RANA_STATICFILES_STORAGE"]},
    }


@pytest.fixture(scope="session", autouse=True)
def _release_test_database(django_db_setup, django_db_blocker):
    """Before the test database is dropped: stop the ledger writer and end the connections
    that executor threads still hold (PostgreSQL refuses to drop a database in use)."""
    yield
    from django.db import connection

    from providers.services import recorder

    if recorder._recorder is not None:
        recorder._recorder.close()
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        connection.close()


def pytest_unconfigure(config):
    if _SQLITE_TEST_DIR is not None:
        shutil.rmtree(_SQLITE_TEST_DIR, ignore_errors=True)
