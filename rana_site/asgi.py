"""ASGI entry point (served by granian in scripts/run)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rana_site.settings")

application = get_asgi_application()

# Start the ledger recorder now, on the main thread, so its flush-on-stop hooks are in place.
from providers.services.recorder import get_recorder  # noqa: E402

get_recorder()
