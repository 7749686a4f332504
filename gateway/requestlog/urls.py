from django.urls import path

from . import views

app_name = "requests"
urlpatterns = [
    path("", views.request_log, name="list"),
    path("export.<str:fmt>", views.request_log_export, name="export"),
]
