"""The messaging part of ``/api/v1/`` (included from hotelbot/urls.py before the reliability API,
whose last pattern answers every other path with a 404)."""

from django.urls import path

from messaging.api.answers import ReplyJobAnswerView

app_name = "messaging-api"

urlpatterns = [
    path("reply-jobs/<int:pk>/answer/", ReplyJobAnswerView.as_view(), name="reply-job-answer"),
]
