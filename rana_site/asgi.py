"""ASGI entry point (served by granian in scripts/run)."""

import gc
import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rana_site.settings")

django_application = get_asgi_application()

# /v1/ (the OpenAI-compatible API) skips Django's middleware stack; everything else is Django.
from gateway.asgi import ApiRouter  # noqa: E402

application = ApiRouter(django_application)

# Start the ledger recorder now, on the main thread, so its flush-on-stop hooks are in place.
from providers.services import service_start  # noqa: E402

service_start()

# Served by scripts/serve: stop (gracefully, within RANA_SHUTDOWN_TIMEOUT_S) if granian's master
# dies, rather than serve on as an orphan holding the port the restarted master needs.
from django.conf import settings  # noqa: E402

from rana_site.serve import exit_with_master  # noqa: E402

exit_with_master(settings.RANA_SHUTDOWN_TIMEOUT_S)

# RANA_METRICS under scripts/serve: forget the live gauges of workers that died (this one may
# replace one of them); their counters stay in the shared folder.
from rana_site.serve import metrics_worker_start  # noqa: E402

metrics_worker_start()

# What is loaded by now (Django, the apps, their modules) lives as long as the process: move it
# out of the cyclic garbage collector's reach, so full collections stop walking it. Measured
# with the API under load: full collections went from up to 60 ms each to under 2 ms, and
# throughput rose by a quarter (bench/gateway_overhead.py).
gc.collect()
gc.freeze()

# The ledger writer (and the executor threads) hold the GIL in stretches of Python; the event
# loop, when it wants the GIL back, waits until the holder is told to let go: the switch
# interval, 5 ms by default, paid again at each of a request's few trips through the loop's
# poll. That was the API's latency tail (p99 ~13 ms where p90 was ~1.4 ms: see
# bench/README.md). 1 ms bounds each wait; the cost is a few more thread switches while
# another thread is busy (nothing when only the loop runs).
sys.setswitchinterval(0.001)
