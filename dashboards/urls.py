from django.urls import path

from . import views

app_name = "dashboards"
urlpatterns = [
    path("", views.index, name="index"),
    path("cost/", views.cost, name="cost"),
    path("charts/<slug:name>/", views.chart, name="chart"),
]
