"""Included under ``api/v1/`` by ``reliability/api/urls.py``."""

from django.urls import path

from reliability.api.reports import ReliabilityReportView

urlpatterns = [
    path("reports/reliability/", ReliabilityReportView.as_view(), name="api-reliability-report"),
]
