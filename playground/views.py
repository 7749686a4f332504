from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from providers.selectors import chain_list


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "playground/playground_index.html", {"chains": chain_list()})
