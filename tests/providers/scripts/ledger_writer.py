"""Child process for the recorder's stop tests: submits attempt rows until it is stopped
(or, with WRITER_REPLAY_ONLY, starts the recorder, which replays dead journals, and stops).

Prints "<n> <monotonic time>" after each row is handed to the recorder, so the parent
knows what was submitted and when.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rana_site.settings")

import django

django.setup()

if os.environ.get("WRITER_SERVER_HANDLER"):  # a server's own SIGTERM handler, installed first
    import signal

    def server_handler(signum, frame):  # exits at once: no atexit flush would save the rows
        print("server handler ran", flush=True)
        os._exit(3)

    signal.signal(signal.SIGTERM, server_handler)

from django.utils import timezone  # noqa: E402

from providers.models import Attempt  # noqa: E402
from providers.models.ledger import new_request_id  # noqa: E402
from providers.services.recorder import get_recorder  # noqa: E402

recorder = get_recorder()
if os.environ.get("WRITER_REPLAY_ONLY"):  # a process that starts after a crash: replays, then stops
    from providers.services.lifecycle import service_start

    service_start()
    recorder.close(timeout_s=60)
    print("replayed", flush=True)
    sys.exit(0)
completion_id = new_request_id()
n = 0
while True:
    n += 1
    recorder.submit(
        Attempt(
            completion_id=completion_id,
            started_at=timezone.now(),
            source="probe",
            step_position=n,
            provider_name="child",
            provider_kind="simulated",
            model=f"row-{n}",
            outcome="success",
            latency_ms=1.0,
        )
    )
    print(n, time.monotonic(), flush=True)
    time.sleep(0.002)
