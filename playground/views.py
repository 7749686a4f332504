"""Playground pages: the chat workspace, sending a prompt, reopening and replaying a run, history.

Login is required everywhere (LoginRequiredMiddleware). A sent prompt (or the results of an
answer's tool calls, typed by hand) becomes a pending run;
its answer fragment then executes it, by server-sent events (views_run.run_stream) or one
POST (views_run.run_complete), so the page shows a busy state and a Stop button works for
both. Without JavaScript the prompt is answered in the POST and the browser is redirected
to the run's page.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import reswap, retarget

from . import services
from .forms import SCHEMA_NAME, PromptForm, fault_formset, fault_specs
from .models import PlaygroundRun
from .rendering import page_or_fragment, thread_turns, tool_form, turn
from .selectors import chain_steps, run_get, runs_recent


def _workspace(
    request: HttpRequest, form: PromptForm, faults: Any, turns: list, *, status: int = 200
) -> HttpResponse:
    context = {"form": form, "faults": faults, "turns": turns}
    return page_or_fragment(
        request, "playground/_workspace.html", context, page="playground/playground_index.html"
    )


def _schema_text(response_format: dict) -> str:
    spec = response_format.get("json_schema") or {}
    value = (
        spec.get("schema", {})
        if spec.get("name") == SCHEMA_NAME and set(spec) == {"name", "schema"}
        else spec
    )
    return json.dumps(value, indent=2)


def _form_from_run(run: PlaygroundRun) -> tuple[PromptForm, Any]:
    """The form to go on from a run: its chain, system prompt, parameters, tools and format."""
    params = run.params
    response_format = params.get("response_format") or {}
    initial = {
        "chain": run.chain_slug,
        "system": run.system,
        "parent": run.pk,
        "stream": run.stream,
        **{k: params.get(k) for k in ("temperature", "max_tokens", "top_p")},
        "stop": "\n".join(params.get("stop", [])),
        "tools": json.dumps(params["tools"], indent=2) if params.get("tools") else "",
        "tool_choice": params.get("tool_choice") if isinstance(params.get("tool_choice"), str) else "auto",
        "response_format": response_format.get("type", "text"),
        "schema": _schema_text(response_format) if response_format.get("type") == "json_schema" else "",
    }
    # Faults are for the one request they were set for: going on from a run starts without any.
    return PromptForm(initial=initial), fault_formset(steps=chain_steps(run.chain_slug))


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    form = PromptForm()
    return _workspace(request, form, fault_formset(steps=chain_steps(form.initial.get("chain"))), [])


@require_GET
def run_detail(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """Reopen a run: its conversation with every timeline, ready to go on from it (with its
    chain, system prompt and parameters; without its faults, which were for it alone)."""
    run = run_get(run_id=run_id, user_id=request.user.pk)
    if run is None:
        raise Http404("No such run.")
    form, faults = _form_from_run(run)
    return _workspace(request, form, faults, thread_turns(run))


@require_GET
def faults_fields(request: HttpRequest) -> HttpResponse:
    """The fault-injection fields for the chain picked (its steps change with it)."""
    context = {"faults": fault_formset(steps=chain_steps(request.GET.get("chain")))}
    return page_or_fragment(request, "playground/_faults.html", context, title="Fault injection")


def _parent(request: HttpRequest, parent_id: uuid.UUID | None) -> PlaygroundRun | None:
    return run_get(run_id=parent_id, user_id=request.user.pk) if parent_id else None


def _invalid(request: HttpRequest, form: PromptForm, faults: Any) -> HttpResponse:
    response = render(request, "playground/_form.html", {"form": form, "faults": faults})
    if request.htmx:
        return reswap(retarget(response, "#pg-form"), "outerHTML")
    return _workspace(request, form, faults, [])


def _started(request: HttpRequest, run: PlaygroundRun) -> HttpResponse:
    """htmx: the new turn (it executes itself); no JS: answer now, then show the run's page."""
    if request.htmx:  # the fault fields go back to "no fault": they were for this request only
        next_faults = fault_formset(steps=chain_steps(run.chain_slug))
        return render(request, "playground/_turn_new.html", {**turn(run), "next_faults": next_faults})
    claimed = async_to_sync(services.run_claim)(run_id=run.pk, user_id=request.user.pk)
    if claimed is not None:
        async_to_sync(services.run_execute)(claimed)
    return redirect("playground:run_detail", run_id=run.pk)


@require_POST
def send(request: HttpRequest) -> HttpResponse:
    form = PromptForm(request.POST, request.FILES)
    faults = fault_formset(request.POST, steps=chain_steps(request.POST.get("chain")))
    if not (form.is_valid() & faults.is_valid()):
        return _invalid(request, form, faults)
    data = form.cleaned_data
    parent = _parent(request, data.get("parent"))
    messages = services.run_messages(
        parent=parent, system=data["system"], message=data["message"], image_url=data.get("image")
    )
    run = services.run_create(
        user_id=request.user.pk,
        chain_slug=data["chain"],
        messages=messages,
        params=form.params(),
        faults=fault_specs(faults),
        stream=data["stream"],
        parent=parent,
    )
    return _started(request, run)


@require_POST
def tool_results(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """Answer a run's tool calls by hand: a new run continues its thread with one tool message
    per call, the same tools and parameters; the model's next answer follows."""
    parent = run_get(run_id=run_id, user_id=request.user.pk)
    form = tool_form(parent, request.POST) if parent is not None else None
    if form is None:
        raise Http404("No tool calls to answer on this run.")
    if not form.is_valid():
        context = {**turn(parent), "tool_form": form}
        if request.htmx:
            response = render(request, "playground/_tool_results.html", context)
            return reswap(retarget(response, f"#pg-tools-{parent.pk}"), "outerHTML")
        form_, faults = _form_from_run(parent)
        turns = thread_turns(parent)
        turns[-1]["tool_form"] = form
        return _workspace(request, form_, faults, turns)
    return _started(request, services.run_tool_results(parent=parent, results=form.results()))


@require_POST
def replay(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """Send a run's conversation, parameters and faults again, as a new run."""
    run = run_get(run_id=run_id, user_id=request.user.pk)
    if run is None:
        raise Http404("No such run.")
    return _started(request, services.run_replay(run=run))


@require_GET
def history(request: HttpRequest) -> HttpResponse:
    context = {"runs": runs_recent(user_id=request.user.pk)}
    return page_or_fragment(
        request, "playground/_history.html", context, page="playground/playground_history.html"
    )
