"""The naive reply task (``celery -A bench.cost.naive.tasks worker``): DeepSeek, Green API, a row."""

import os

import django
import requests
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.cost.naive.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

app = Celery("naive")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_acks_late = True
app.conf.worker_prefetch_multiplier = 1
_http = requests.Session()


@app.task
def answer(message_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT chat_id, text FROM naive_message WHERE id = %s", [message_id])
        chat_id, text = cursor.fetchone()
    completion = _http.post(
        f"{settings.DEEPSEEK_URL}/chat/completions",
        headers={"Authorization": f"Bearer {settings.DEEPSEEK_API_KEY}"},
        json={
            "model": "deepseek-flash",
            "thinking": {"type": "disabled"},
            "messages": [
                {"role": "system", "content": "You are the concierge of a hotel."},
                {"role": "user", "content": text},
            ],
        },
        timeout=30,
    ).json()
    reply = completion["choices"][0]["message"]["content"]
    sent = _http.post(
        f"{settings.GREEN_API_URL}/waInstance{settings.GREEN_API_ID_INSTANCE}/sendMessage/"
        f"{settings.GREEN_API_TOKEN}",
        json={"chatId": chat_id, "message": reply},
        timeout=30,
    ).json()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO naive_reply (message_id, provider_message_id, text) VALUES (%s, %s, %s)",
            [message_id, sent["idMessage"], reply],
        )
