"""The run as the playground shows it: faults reset after their request, what a run used, the
completion it made, copy buttons and the run as code (curl and the OpenAI SDK, never a key)."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from playground.models import PlaygroundRun
from playground.snippets import KEY_PLACEHOLDER, run_snippets
from tests.playground.asgi_server import form_data

pytestmark = pytest.mark.django_db(transaction=True)

HX = {"HTTP_HX_REQUEST": "true"}
FAULT = {"fault-0-failure": "server_error", "fault-0-step": "0", "fault-0-times": "1"}


def faults_html(html: str) -> str:
    return re.search(r'<details class="pg-box pg-faults".*?</details>', html, re.S).group(0)


def test_the_fault_fields_reset_once_the_request_they_were_set_for_is_sent(user_client, chains):
    response = user_client.post(reverse("playground:send"), form_data(**FAULT), **HX)
    run = PlaygroundRun.objects.get()
    assert run.faults and run.faults[0]["failure"] == "server_error"
    fields = faults_html(response.content.decode())
    assert 'hx-swap-oob="true"' in fields  # the form's fault fields are swapped for fresh ones
    assert '<option value="" selected>no fault</option>' in fields
    assert 'value="server_error" selected' not in fields
    assert "once it is sent these fields go back" in fields


def test_reopening_a_run_keeps_its_settings_but_not_its_faults(user_client, chains):
    user_client.post(reverse("playground:send"), form_data(stream="", system="be brief", **FAULT))
    run = PlaygroundRun.objects.get()
    page = user_client.get(reverse("playground:run_detail", args=[run.pk])).content.decode()
    assert "be brief</textarea>" in page  # the system prompt to go on with
    assert 'value="server_error" selected' not in faults_html(page)


def test_the_run_page_shows_the_system_prompt_parameters_and_links_its_completion(user_client, chains):
    user_client.post(
        reverse("playground:send"),
        form_data(stream="", system="You answer in French.", temperature="0.3", max_tokens="50", **FAULT),
    )
    run = PlaygroundRun.objects.get()
    page = user_client.get(reverse("playground:run_detail", args=[run.pk])).content.decode()
    used = re.search(r'<details class="pg-used".*?</details>', page, re.S).group(0)
    assert "You answer in French." in used
    assert "temperature=0.3" in used and "max_tokens=50" in used
    assert "step 1: server_error ×1" in used
    assert f'href="/completions/{run.completion_id}/"' in page
    assert f'data-copy="{run.completion_id}"' in page  # copy the request id
    assert f'data-copy-target="#answer-text-{run.pk}"' in page and f'id="answer-text-{run.pk}"' in page
    assert "data-pg-collapse" in page  # long prompts and answers can be cut short
    assert "js/copy.js" in page


def test_the_run_as_code_points_at_this_server_with_a_placeholder_key(user_client, chains, user):
    user_client.post(reverse("playground:send"), form_data(stream="", system="Be brief.", top_p="0.9"))
    run = PlaygroundRun.objects.get()
    page = user_client.get(reverse("playground:run_detail", args=[run.pk])).content.decode()
    code = re.search(r'<details class="pg-code-view".*?</details>', page, re.S).group(0)
    assert "curl http://testserver/v1/chat/completions" in code
    assert "base_url=&quot;http://testserver/v1&quot;" in code
    assert KEY_PLACEHOLDER in code and "sk-" not in code and "rana_" + "live" not in code


def test_the_snippets_send_the_runs_conversation_and_parameters():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "It's late"}]
    code = run_snippets(
        base_url="http://gw.example/v1",
        chain_slug="demo",
        messages=messages,
        params={"top_p": 0.9},
        stream=True,
    )
    body = json.loads(code["curl"].split("-d '", 1)[1].rsplit("'", 1)[0].replace("'\"'\"'", "'"))
    assert body == {"model": "demo", "messages": messages, "top_p": 0.9, "stream": True}
    assert f"Bearer {KEY_PLACEHOLDER}" in code["curl"] and " -N " in code["curl"].replace("\n", " ")
    compile(code["python"], "snippet.py", "exec")  # valid Python
    assert 'OpenAI(base_url="http://gw.example/v1", api_key="rana_YOUR_GATEWAY_KEY")' in code["python"]
    assert (
        "model='demo'" in code["python"] and "stream=True" in code["python"] and "top_p=0.9" in code["python"]
    )


def test_an_attached_images_data_url_is_shortened_in_the_snippet():
    image = "data:image/png;base64," + "A" * 5000
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]}]
    code = run_snippets(base_url="http://x/v1", chain_slug="c", messages=messages, params={}, stream=False)
    assert "A" * 100 not in code["curl"] and "shortened" in code["python"]
