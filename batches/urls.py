from django.urls import path

from . import views

app_name = "batches"
urlpatterns = [
    path("", views.batch_list, name="list"),
    path("<uuid:batch_id>/", views.batch_detail, name="detail"),
    path("<uuid:batch_id>/cancel", views.batch_cancel_view, name="cancel"),
    path("<uuid:batch_id>/results.<str:fmt>", views.batch_results, name="results"),
]
