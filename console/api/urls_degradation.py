"""Degradation endpoints, included under ``/api/v1/``."""

from django.urls import path

from console.api.degradation import DegradationOverrideView, DegradationView

urlpatterns = [
    path("degradation/", DegradationView.as_view(), name="degradation"),
    path("degradation/override/", DegradationOverrideView.as_view(), name="degradation-override"),
]
