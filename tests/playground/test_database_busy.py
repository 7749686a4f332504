"""A busy database in the playground: a clear 503 to retry, or the run's own words; never a 500."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from playground import services
from playground.models import PlaygroundRun, RunStatus
from providers.models import Completion
from tests.dblock import writes_blocked
from tests.playground.conftest import form_data

pytestmark = pytest.mark.django_db(transaction=True)
HX = {"HTTP_HX_REQUEST": "true"}


def test_send_while_the_database_stays_locked_answers_503_with_retry_after(user_client, chains):
    with writes_blocked("playground_playgroundrun"):
        response = user_client.post(reverse("playground:send"), form_data(stream=""))
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert "The database is busy" in response.content.decode()
    assert "<html" in response.content.decode()
    assert PlaygroundRun.objects.count() == 0


def test_htmx_send_while_locked_gets_a_fragment_not_a_page(user_client, chains):
    with writes_blocked("playground_playgroundrun"):
        response = user_client.post(reverse("playground:send"), form_data(), **HX)
    html = response.content.decode()
    assert response.status_code == 503 and 'id="rana-database-busy"' in html and "<html" not in html


def test_send_succeeds_once_the_lock_is_gone(user_client, chains):
    with writes_blocked("playground_playgroundrun"):
        assert user_client.post(reverse("playground:send"), form_data(stream="")).status_code == 503
    response = user_client.post(reverse("playground:send"), form_data(stream=""))
    assert response.status_code == 302
    assert PlaygroundRun.objects.get().outcome == "success"


def test_a_run_that_cannot_be_saved_tells_the_user_and_loses_no_ledger_row(user, chains, buffered_ledger):
    run = services.run_create(
        user_id=user.pk, chain_slug="two", messages=[{"role": "user", "content": "hi"}], params={}
    )
    claimed = async_to_sync(services.run_claim)(run_id=run.pk, user_id=user.pk)
    with writes_blocked("playground_playgroundrun"):
        finished = async_to_sync(services.run_execute)(claimed)
    assert finished.answer.startswith("Simulated answer")  # shown to the user all the same
    assert finished.outcome == "error" and "could not be saved" in finished.error_message
    assert PlaygroundRun.objects.get(pk=run.pk).status == RunStatus.RUNNING  # no half-written row
    assert buffered_ledger.flush(10)
    completion = Completion.objects.get(pk=finished.completion_id)
    assert completion.outcome == "success" and completion.attempts.count() == 1
