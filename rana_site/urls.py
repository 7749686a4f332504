from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboards import views_status
from rana_site import views, views_metrics

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views_metrics.metrics, name="metrics"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("playground/", include("playground.urls")),
    path("batches/", include("batches.urls")),
    path("dashboards/", include("dashboards.urls")),
    path("status/", views_status.status, name="status"),
    path("status.json", views_status.status_json, name="status-json"),
    path("status/circuits/", views_status.circuit, name="status-circuit"),
    path("completions/", include("gateway.urls_pages")),
    path("requests/", include("gateway.requestlog.urls")),
    path("alerts/", include("alerts.urls")),
    path("v1/", include("gateway.urls")),  # served by gateway.asgi under ASGI (see rana_site/asgi.py)
]

handler500 = "rana_site.db_busy.server_error"
