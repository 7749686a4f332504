"""Playground pages and fragments: with and without htmx, login and CSRF enforced."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from playground.models import PlaygroundRun
from providers.models import Completion
from tests.playground.asgi_server import form_data

pytestmark = pytest.mark.django_db(transaction=True)

HX = {"HTTP_HX_REQUEST": "true"}


def field_html(html: str, name: str) -> str:
    return re.search(rf'<div class="[^"]*" id="field-{name}".*?</div>', html, re.S).group(0)


def csrf_token(client: Client) -> str:
    page = client.get(reverse("playground:index")).content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_the_page_needs_a_login(chains):
    response = Client().get(reverse("playground:index"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_page_preselects_the_default_chain_and_offers_every_control(user_client, chains):
    response = user_client.get(reverse("playground:index"))
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html
    assert '<option value="two" selected>' in html and '<option value="solo">' in html
    for name in ("system", "message", "temperature", "max_tokens", "top_p", "stop", "stream"):
        assert f'name="{name}"' in html
    assert 'id="pg-stop"' in html and 'id="pg-send"' in html
    assert "Step 1 · first / m1" in html  # fault step picker lists the chain's steps
    assert "js/playground.js" in html and "htmx" in html
    assert "HX-Request" in response["Vary"]


def test_the_page_as_an_htmx_fragment_is_the_workspace_only(user_client, chains):
    response = user_client.get(reverse("playground:index"), **HX)
    html = response.content.decode()
    assert "<html" not in html and html.lstrip().startswith('<div class="pg-workspace"')


def test_sending_without_a_csrf_token_is_refused(csrf_client, chains):
    response = csrf_client.post(reverse("playground:send"), form_data(), **HX)
    assert response.status_code == 403
    assert not PlaygroundRun.objects.exists()


def test_sending_with_the_csrf_header_creates_a_pending_streamed_run(csrf_client, chains, user):
    token = csrf_token(csrf_client)
    response = csrf_client.post(reverse("playground:send"), form_data(), HTTP_X_CSRFTOKEN=token, **HX)
    run = PlaygroundRun.objects.get()
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert f'data-stream-url="/playground/runs/{run.pk}/stream"' in html
    assert f'id="id_parent" value="{run.pk}" hx-swap-oob="true"' in html
    assert (run.user_id, run.status, run.chain_slug) == (user.pk, "pending", "two")
    assert run.messages == [{"role": "user", "content": "hello there playground"}]


def test_an_invalid_parameter_is_shown_on_its_field(user_client, chains):
    response = user_client.post(reverse("playground:send"), form_data(temperature="7"), **HX)
    html = response.content.decode()
    assert response["HX-Retarget"] == "#pg-form" and response["HX-Reswap"] == "outerHTML"
    field = field_html(html, "temperature")
    assert "has-error" in field and "less than or equal to 2" in field
    assert not PlaygroundRun.objects.exists()


def test_an_invalid_parameter_without_htmx_rerenders_the_page(user_client, chains):
    response = user_client.post(reverse("playground:send"), form_data(top_p="abc"))
    assert response.status_code == 200 and "<html" in response.content.decode()
    assert "Enter a number." in response.content.decode()


def test_too_many_stop_sequences_is_a_field_error_from_the_service_rules(user_client, chains):
    response = user_client.post(reverse("playground:send"), form_data(stop="a\nb\nc\nd\ne"), **HX)
    field = field_html(response.content.decode(), "stop")
    assert "at most 4 strings" in field


def test_an_unknown_chain_is_a_chain_field_error(user_client, chains):
    response = user_client.post(reverse("playground:send"), form_data(chain="nope"), **HX)
    field = field_html(response.content.decode(), "chain")
    assert "Select a valid choice" in field


def test_without_javascript_the_prompt_is_answered_and_the_run_page_shown(user_client, chains):
    response = user_client.post(reverse("playground:send"), form_data(stream=""))
    run = PlaygroundRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/playground/runs/{run.pk}/"
    page = user_client.get(response["Location"]).content.decode()
    assert "Simulated answer from first (m1)" in page and 'data-outcome="success"' in page
    completion = Completion.objects.get(pk=run.completion_id)
    assert completion.source == "playground" and completion.user_id == run.user_id


def test_a_second_turn_sends_the_conversation_back(user_client, chains):
    user_client.post(reverse("playground:send"), form_data(stream="", system="be brief"))
    first = PlaygroundRun.objects.get()
    again = form_data(stream="", system="be brief", message="and again", parent=first.pk)
    user_client.post(reverse("playground:send"), again)
    second = PlaygroundRun.objects.exclude(pk=first.pk).get()
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "user"]
    assert second.messages[2]["content"] == first.answer and second.parent_id == first.pk
    page = user_client.get(reverse("playground:run_detail", args=[second.pk])).content.decode()
    assert page.count('class="pg-turn"') == 2 and page.count('class="pg-timeline"') == 2


def test_replay_sends_the_same_run_again(user_client, chains):
    user_client.post(reverse("playground:send"), form_data(stream=""))
    run = PlaygroundRun.objects.get()
    response = user_client.post(reverse("playground:replay", args=[run.pk]), **HX)
    again = PlaygroundRun.objects.exclude(pk=run.pk).get()
    assert again.messages == run.messages and again.status == "pending"
    assert f'id="turn-{again.pk}"' in response.content.decode()


def test_the_complete_fragment_answers_a_non_streamed_run_once(user_client, chains):
    user_client.post(reverse("playground:send"), form_data(stream=""), **HX)
    run = PlaygroundRun.objects.get()
    url = reverse("playground:run_complete", args=[run.pk])
    html = user_client.post(url, **HX).content.decode()
    assert "Simulated answer from first" in html and 'data-completion-outcome="success"' in html
    user_client.post(url, **HX)  # a repeat shows the same answer and sends nothing
    assert Completion.objects.count() == 1


@pytest.mark.parametrize("name", ["run_answer", "run_timeline"])
def test_answer_and_timeline_fragments_with_and_without_htmx(user_client, chains, name):
    user_client.post(reverse("playground:send"), form_data(stream=""))
    run = PlaygroundRun.objects.get()
    url = reverse(f"playground:{name}", args=[run.pk])
    fragment = user_client.get(url, **HX).content.decode()
    page = user_client.get(url).content.decode()
    assert "<html" not in fragment and f'id="timeline-{run.pk}"' in fragment
    assert "<html" in page and f'id="timeline-{run.pk}"' in page


def test_faults_fragment_follows_the_chain_picked(user_client, chains):
    html = user_client.get(reverse("playground:faults"), {"chain": "solo"}, **HX).content.decode()
    assert "<html" not in html and "Step 1 · second / m2" in html and "first / m1" not in html
    assert "<html" in user_client.get(reverse("playground:faults"), {"chain": "solo"}).content.decode()


def test_history_lists_only_the_users_runs(user_client, chains, other_user):
    user_client.post(reverse("playground:send"), form_data(stream="", message="mine"))
    other = Client()
    other.force_login(other_user)
    other.post(reverse("playground:send"), form_data(stream="", message="theirs"))
    page = user_client.get(reverse("playground:history")).content.decode()
    fragment = user_client.get(reverse("playground:history"), **HX).content.decode()
    assert "mine" in page and "theirs" not in page and "<html" in page
    assert "mine" in fragment and "<html" not in fragment


def test_another_users_run_is_not_found(user_client, chains, other_user):
    other = Client()
    other.force_login(other_user)
    other.post(reverse("playground:send"), form_data(stream=""))
    run = PlaygroundRun.objects.get()
    for name in ("run_detail", "run_answer", "run_timeline"):
        assert user_client.get(reverse(f"playground:{name}", args=[run.pk])).status_code == 404
    assert user_client.post(reverse("playground:replay", args=[run.pk])).status_code == 404
    assert user_client.get(reverse("playground:run_stream", args=[run.pk])).status_code == 204


def test_compare_page_and_two_chains_side_by_side(user_client, chains):
    page = user_client.get(reverse("playground:compare")).content.decode()
    assert '<option value="solo" selected>' in page
    response = user_client.post(reverse("playground:compare"), form_data(chain_b="solo", stream=""), **HX)
    html = response.content.decode()
    assert html.count('class="pg-compare-col"') == 2 and "<html" not in html
    runs = PlaygroundRun.objects.order_by("created_at")
    assert [r.chain_slug for r in runs] == ["two", "solo"] and runs[0].compare_group == runs[1].compare_group


def test_compare_without_javascript_answers_both(user_client, chains):
    response = user_client.post(reverse("playground:compare"), form_data(chain_b="solo", stream=""))
    html = response.content.decode()
    assert "<html" in html and html.count('data-completion-outcome="success"') == 2
    assert "Simulated answer from first" in html and "Simulated answer from second" in html


def test_compare_needs_two_different_chains(user_client, chains):
    response = user_client.post(reverse("playground:compare"), form_data(chain_b="two"), **HX)
    assert response["HX-Retarget"] == "#pg-compare-form"
    assert "Pick a different chain" in response.content.decode()
