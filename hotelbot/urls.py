from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from health_check.views import HealthCheckView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/", include("messaging.api.webhook_urls")),
    path("api/v1/", include("reliability.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    # Liveness: the process answers. Readiness: what a pod needs to take traffic (the database).
    path("health/live/", HealthCheckView.as_view(checks=[]), name="health-live"),
    path(
        "health/ready/",
        HealthCheckView.as_view(checks=["health_check.checks.Database"]),
        name="health-ready",
    ),
    path("", include("django_prometheus.urls")),
]
