"""Test-run configuration.

Environment defaults are for subprocesses the tests start (manage.py, servers); the same
values are set on Django's settings directly, since pytest-django may read the settings
before this file is imported.
"""

import os

TEST_ENV = {
    "DEBUG": "1",
    "RANA_ALLOWED_UPSTREAM_HOSTS": "127.0.0.1,localhost",
    "RANA_LEDGER_MODE": "sync",
    "CELERY_TASK_ALWAYS_EAGER": "1",
    "RANA_STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
}
for _name, _value in TEST_ENV.items():
    os.environ.setdefault(_name, _value)


def pytest_configure(config):
    from django.conf import settings

    settings.RANA_ALLOWED_UPSTREAM_HOSTS = os.environ["RANA_ALLOWED_UPSTREAM_HOSTS"].split(",")
    settings.RANA_LEDGER_MODE = os.environ["RANA_LEDGER_MODE"]
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": os.environ["RANA_STATICFILES_STORAGE"]},
    }


def pytest_sessionfinish(session, exitstatus):
    """Close the ledger writer's database connection so the test database can be dropped."""
    from providers.services import recorder

    if recorder._recorder is not None:
        recorder._recorder.close()
