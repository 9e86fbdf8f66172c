from django.urls import path

from messaging.api.views import GreenApiHotelWebhookView, GreenApiWebhookView

urlpatterns = [
    # Legacy URL: the global GREEN_API_WEBHOOK_TOKEN (single-hotel opt-in) or any hotel's own token,
    # matched to the body's idInstance.
    path("green-api/", GreenApiWebhookView.as_view(), name="green-api-webhook"),
    # Per-hotel URL (what hotel_connect configures): only that hotel's token, only its instance.
    path("green-api/<str:instance>/", GreenApiHotelWebhookView.as_view(), name="green-api-webhook-hotel"),
]
