"""scripts/serve's part in metrics: the multiprocess folder for the workers, and dead workers."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

from rana_site.serve import MULTIPROC_ENV, metrics_folder_prepare, metrics_worker_start


def test_metrics_on_empties_the_folder_and_points_the_workers_at_it(tmp_path, monkeypatch):
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"old")
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    metrics_folder_prepare(SimpleNamespace(RANA_METRICS=True, RANA_METRICS_DIR=str(folder)))
    assert os.environ[MULTIPROC_ENV] == str(folder) and not list(folder.iterdir())


def test_metrics_off_sets_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    metrics_folder_prepare(SimpleNamespace(RANA_METRICS=False, RANA_METRICS_DIR=str(tmp_path)))
    assert MULTIPROC_ENV not in os.environ


def test_a_starting_worker_drops_dead_workers_live_gauges_but_keeps_their_counts(tmp_path, monkeypatch):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    for name in (f"gauge_livesum_{pid}.db", f"counter_{pid}.db", f"gauge_livesum_{os.getpid()}.db"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    metrics_worker_start()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{pid}.db", f"gauge_livesum_{os.getpid()}.db"]
    )
