"""The messaging part of ``/api/v1/`` (included from hotelbot/urls.py before ``console.api.urls``,
whose last pattern answers every other path with a 404). Its namespace predates the console."""

from django.urls import path

from console.api.answers import ReplyJobAnswerView

app_name = "messaging-api"

urlpatterns = [
    path("reply-jobs/<int:pk>/answer/", ReplyJobAnswerView.as_view(), name="reply-job-answer"),
]
