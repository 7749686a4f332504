"""scripts/run's processes start and stop as one: the web server (scripts/serve: granian's
master and worker) beside a Celery worker with beat embedded (its pool process and beat's).

The tail of scripts/run (`serve_with_worker`, scripts/lib.sh) runs on a migrated SQLite file
and broker folders of its own; beat, reading its schedule from the database, sends the rollup
reconcile, which the worker runs. Ctrl-C (SIGINT to the whole process group, as a terminal
sends it), SIGTERM to the shell alone (as a supervisor sends it), or even SIGKILL to the shell
(its children then get a SIGTERM from the kernel) stops every process it started: none is left
in its session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request

import pytest

from tests.celery_worker import ROOT, Database, filesystem_broker, session_pids, wait_for
from tests.gateway.live import free_port

pytestmark = pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="runs in scripts/test's SQLite pass"
)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm-to-the-shell", "sigkill-to-the-shell"])
def test_the_server_and_the_worker_with_beat_run_and_stop_together(tmp_path, stop):
    database = Database(f"sqlite:///{tmp_path / 'rana.sqlite3'}")
    database.manage("migrate", "--noinput", "-v0")
    database.execute(  # the reconcile every second instead of every 10 minutes
        "UPDATE django_celery_beat_intervalschedule SET every = 1, period = 'seconds' WHERE id = "
        "(SELECT interval_id FROM django_celery_beat_periodictask WHERE name = 'rollups reconcile')"
    )
    port = free_port()
    env = {
        **database.env(),
        **filesystem_broker(tmp_path / "broker").env,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "LOG_LEVEL": "INFO",
        "RANA_HOST": "127.0.0.1",
        "RANA_PORT": str(port),
        "RANA_WORKERS": "1",
    }
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        shell = subprocess.Popen(
            ["bash", "-c", "source scripts/lib.sh && serve_with_worker"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60, "the web server")
        wait_for(lambda: "rollups_reconcile" in log_path.read_text(), 60, "beat to send the reconcile")
        wait_for(lambda: "succeeded" in log_path.read_text(), 60, "the worker to run it")
        assert len(session_pids(shell.pid)) >= 6  # bash, granian x2, celery, its pool process, beat

        if stop == "ctrl-c":
            os.killpg(shell.pid, signal.SIGINT)
        else:
            shell.send_signal(signal.SIGTERM if stop == "sigterm-to-the-shell" else signal.SIGKILL)
        shell.wait(60)
        wait_for(lambda: not session_pids(shell.pid), 60, "every process to stop")
        assert "Warm shutdown" in log_path.read_text()  # the worker stopped gracefully
    finally:
        for pid in session_pids(shell.pid):
            os.kill(pid, signal.SIGKILL)
