"""Included under ``api/v1/`` by ``console/api/urls.py``."""

from django.urls import path

from console.api.reports import ReliabilityReportView

urlpatterns = [
    path("reports/reliability/", ReliabilityReportView.as_view(), name="api-reliability-report"),
]
