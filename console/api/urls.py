"""/api/v1/: the staff console's API on breakers, dead letters, reports and degradation (included
from hotelbot/urls.py; its namespace predates the console)."""

from __future__ import annotations

from django.urls import include, path, re_path

from console.api import views

app_name = "reliability-api"

urlpatterns = [
    path("breakers/", views.BreakerListView.as_view(), name="breaker-list"),
    path("breakers/<str:name>/", views.BreakerDetailView.as_view(), name="breaker-detail"),
    path("breakers/<str:name>/reset/", views.BreakerResetView.as_view(), name="breaker-reset"),
    path("breakers/<str:name>/force-open/", views.BreakerForceOpenView.as_view(), name="breaker-force-open"),
    path(
        "breakers/<str:name>/force-close/", views.BreakerForceCloseView.as_view(), name="breaker-force-close"
    ),
    path("dead-letters/", views.DeadLetterListView.as_view(), name="dead-letter-list"),
    path("dead-letters/retry-bulk/", views.DeadLetterBulkRetryView.as_view(), name="dead-letter-retry-bulk"),
    path("dead-letters/<int:pk>/", views.DeadLetterDetailView.as_view(), name="dead-letter-detail"),
    path("dead-letters/<int:pk>/retry/", views.DeadLetterRetryView.as_view(), name="dead-letter-retry"),
    path("dead-letters/<int:pk>/discard/", views.DeadLetterDiscardView.as_view(), name="dead-letter-discard"),
    path("quarantined-notifications/", views.QuarantineListView.as_view(), name="quarantine-list"),
    path(
        "quarantined-notifications/<int:pk>/", views.QuarantineDetailView.as_view(), name="quarantine-detail"
    ),
    path(
        "quarantined-notifications/<int:pk>/discard/",
        views.QuarantineDiscardView.as_view(),
        name="quarantine-discard",
    ),
    path(
        "quarantined-notifications/<int:pk>/resolve/",
        views.QuarantineResolveView.as_view(),
        name="quarantine-resolve",
    ),
    path("", include("console.api.urls_reports")),
    path("", include("console.api.urls_degradation")),
    # Last: any other path under /api/v1/ is a 404 in the error envelope.
    re_path(r"^.*$", views.UnknownPathView.as_view(), name="unknown"),
]
