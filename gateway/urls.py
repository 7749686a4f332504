from django.urls import path, re_path

from . import views

app_name = "gateway"
urlpatterns = [
    path("chat/completions", views.chat_completions, name="chat_completions"),
    path("models", views.models, name="models"),
    path("models/<path:slug>", views.model, name="model"),
    re_path(r"^(?P<rest>.*)$", views.not_found, name="not_found"),
]
