from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from reliability import views as health_views
from reliability.observability import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/", include("messaging.api.webhook_urls")),
    path("api/v1/", include("console.api.urls_messaging")),  # before the console API's catch-all 404
    path("api/v1/", include("console.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    # Liveness: the process answers (no dependency). Readiness: what a pod needs to take traffic
    # (the database only). /health/ and /health/detailed/: every check (reliability/health/).
    path("health/live/", health_views.HealthView.as_view(scope="live"), name="health-live"),
    path("health/ready/", health_views.HealthView.as_view(scope="ready"), name="health-ready"),
    path("health/", health_views.HealthView.as_view(scope="all"), name="health"),
    path("health/detailed/", health_views.HealthView.as_view(scope="all"), name="health-detailed"),
    path("health/circuit-breakers/", health_views.circuit_breakers, name="health-circuit-breakers"),
    path("health/degradation/", health_views.degradation_state, name="health-degradation"),
    path("health/dlq/", health_views.dead_letters, name="health-dlq"),
    # Prometheus: every process's samples in multiprocess mode (reliability/observability.py).
    path("metrics", metrics_view, name="prometheus-django-metrics"),
]

# Django's error pages: the error envelope on JSON routes (/api/, /webhooks/), HTML elsewhere.
handler400 = "hotelbot.exceptions.handler400"
handler403 = "hotelbot.exceptions.handler403"
handler404 = "hotelbot.exceptions.handler404"
handler500 = "hotelbot.exceptions.handler500"
