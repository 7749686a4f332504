from django.urls import path

from . import views, views_run

app_name = "playground"
urlpatterns = [
    path("", views.index, name="index"),
    path("send", views.send, name="send"),
    path("faults", views.faults_fields, name="faults"),
    path("history", views.history, name="history"),
    path("compare", views_run.compare, name="compare"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<uuid:run_id>/replay", views.replay, name="replay"),
    path("runs/<uuid:run_id>/tool-results", views.tool_results, name="tool_results"),
    path("runs/<uuid:run_id>/stream", views_run.run_stream, name="run_stream"),
    path("runs/<uuid:run_id>/complete", views_run.run_complete, name="run_complete"),
    path("runs/<uuid:run_id>/answer", views_run.run_answer, name="run_answer"),
    path("runs/<uuid:run_id>/timeline", views_run.run_timeline, name="run_timeline"),
]
