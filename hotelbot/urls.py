from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from health_check.views import HealthCheckView

from reliability.observability import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/", include("messaging.api.webhook_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Liveness: the process answers. Readiness: what a pod needs to take traffic (the database).
    path("health/live/", HealthCheckView.as_view(checks=[]), name="health-live"),
    path(
        "health/ready/",
        HealthCheckView.as_view(checks=["health_check.checks.Database"]),
        name="health-ready",
    ),
    # Prometheus: every process's samples in multiprocess mode (reliability/observability.py).
    path("metrics", metrics_view, name="prometheus-django-metrics"),
]
