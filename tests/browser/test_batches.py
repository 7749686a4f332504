"""Batch runs in real Chromium: upload a 50-prompt file, watch the progress bar reach 100 % (htmx
polling while a real Celery worker runs the batch), download the results and find 50 rows.

The site is served by granian (tests/playground/asgi_server.py) and the batch run by a worker
(tests/celery_worker.py) on the same SQLite file and broker folders; the "fast" chain is a
simulated provider (40 ms an answer). Screenshot: test-artifacts/screenshots/batches-done.png.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.celery_worker import Database, filesystem_broker, start_worker
from tests.playground.asgi_server import PASSWORD, USERNAME, AsgiServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[AsgiServer]:
    folder = tmp_path_factory.mktemp("batch-broker")
    broker = dataclasses.replace(filesystem_broker(folder), queue="celery")  # where the site sends tasks
    with AsgiServer(extra_env={"CELERY_TASK_ALWAYS_EAGER": "0", **broker.env}) as server:
        database = Database(f"sqlite:///{server.db_path}")
        worker = start_worker(database, broker, folder / "worker.log", RANA_CELERY_DIR=str(folder))
        try:
            yield server
        finally:
            worker.stop()


def test_an_uploaded_file_runs_to_100_percent_and_its_results_download(
    page: Page, server: AsgiServer, tmp_path: Path, screenshot_path
):
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("id,prompt\n" + "".join(f"p{i},Say hello number {i}\n" for i in range(50)))
    page.goto(server.url("/accounts/login/?next=/batches/"))
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Batch runs")

    page.set_input_files("#id_file", str(prompts))
    page.select_option("#id_chain", "fast")
    page.fill("#id_concurrency", "2")
    page.click("#batch-upload button[type=submit]")
    expect(page.locator(".batch-status")).to_be_visible()
    expect(page.locator(".batch-percent")).to_have_text("100 %", timeout=60_000)
    expect(page.locator(".batch-done")).to_have_text("50")
    expect(page.locator('[role="progressbar"]')).to_have_attribute("aria-valuenow", "100")
    page.screenshot(path=screenshot_path("batches-done"), full_page=True)

    with page.expect_download() as download:
        page.click("#results-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert len(rows) == 50
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(50)]
    assert {r["outcome"] for r in rows} == {"done"} and all(r["answer"] for r in rows)
