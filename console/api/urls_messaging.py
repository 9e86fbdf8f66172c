"""The messaging part of ``/api/v1/`` (included from hotelbot/urls.py before ``console.api.urls``,
whose last pattern answers every other path with a 404). Its namespace predates the console."""

from django.urls import path

from console.api import conversations as c
from console.api.answers import ReplyJobAnswerView

app_name = "messaging-api"

urlpatterns = [
    path("reply-jobs/<int:pk>/answer/", ReplyJobAnswerView.as_view(), name="reply-job-answer"),
    path("conversations/", c.ConversationListView.as_view(), name="conversation-list"),
    path("conversations/<int:pk>/", c.ConversationDetailView.as_view(), name="conversation-detail"),
    path("conversations/<int:pk>/take/", c.ConversationTakeView.as_view(), name="conversation-take"),
    path(
        "conversations/<int:pk>/hand-back/",
        c.ConversationHandBackView.as_view(),
        name="conversation-hand-back",
    ),
    path("conversations/<int:pk>/reply/", c.ConversationReplyView.as_view(), name="conversation-reply"),
    path("conversations/<int:pk>/notes/", c.ConversationNotesView.as_view(), name="conversation-notes"),
    path(
        "conversations/<int:pk>/clear-opt-out/",
        c.ConversationClearOptOutView.as_view(),
        name="conversation-clear-opt-out",
    ),
]
