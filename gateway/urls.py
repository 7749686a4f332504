from django.urls import re_path

from . import views

app_name = "gateway"
# One route table for /v1/: gateway.api.chat.dispatch, for Django and the lean ASGI path alike.
urlpatterns = [re_path(r"^.*$", views.api, name="api")]
