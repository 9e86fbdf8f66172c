"""The naive webhook: store the guest's message, enqueue the reply task on commit, answer 200."""

import json

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from bench.cost.naive import settings


@csrf_exempt
def webhook(request: HttpRequest, instance: str) -> HttpResponse:
    if request.headers.get("Authorization") != f"Bearer {settings.WEBHOOK_TOKEN}":
        return JsonResponse({"error": "unauthorized"}, status=401)
    body = json.loads(request.body)
    if body.get("typeWebhook") != "incomingMessageReceived":
        return JsonResponse({"ok": True})
    text = body["messageData"].get("textMessageData", {}).get("textMessage", "")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO naive_message (provider_message_id, chat_id, text) VALUES (%s, %s, %s) "
            "ON CONFLICT (provider_message_id) DO NOTHING RETURNING id",
            [body["idMessage"], body["senderData"]["chatId"], text],
        )
        row = cursor.fetchone()
        if row is not None:
            from bench.cost.naive.tasks import answer

            message_id = row[0]
            transaction.on_commit(lambda: answer.delay(message_id))
    return JsonResponse({"ok": True})


def live(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("webhooks/green-api/<str:instance>/", webhook),
    path("health/live/", live),
]
