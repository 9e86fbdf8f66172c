from django.urls import path

from messaging.api.views import GreenApiWebhookView

urlpatterns = [path("green-api/", GreenApiWebhookView.as_view(), name="green-api-webhook")]
