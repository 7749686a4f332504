from django.urls import path

from . import views_pages

app_name = "completions"
urlpatterns = [
    path("", views_pages.completion_lookup, name="lookup"),
    path("<uuid:request_id>/", views_pages.completion_detail, name="detail"),
]
