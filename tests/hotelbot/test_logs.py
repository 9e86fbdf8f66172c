"""Structured logs (issue 10): JSON lines, request ids across web and Celery, secrets masked."""

from __future__ import annotations

import copy
import io
import json
import logging
import logging.config
from types import SimpleNamespace
from typing import Any

import pytest
from celery.signals import before_task_publish, task_postrun, task_prerun
from django.test import Client

from hotelbot.logs import request_id

GREEN_TOKEN = "gtok9f8e7d6c5b4a3"
DEEPSEEK_KEY = "sk-live-0123456789abcdef"
WEBHOOK_TOKEN = "whk-5a4b3c2d1e"
CHAT = "79001234567@c.us"
PHONE = "+447700900123"
SECRETS = (
    GREEN_TOKEN,
    DEEPSEEK_KEY,
    WEBHOOK_TOKEN,
    "Zm9vOmJhcg",
    "79001234567",
    "447700900123",
    "hunter2pass",
)


@pytest.fixture
def json_log(settings):
    """The project's LOGGING with LOG_FORMAT=json, writing to a buffer."""
    from django.conf import settings as live

    settings.GREEN_API_TOKEN = GREEN_TOKEN
    settings.DEEPSEEK_API_KEY = DEEPSEEK_KEY
    settings.GREEN_API_WEBHOOK_TOKEN = WEBHOOK_TOKEN
    buffer = io.StringIO()
    config: dict[str, Any] = copy.deepcopy(live.LOGGING)
    config["handlers"]["console"]["formatter"] = "json"
    config["handlers"]["console"]["stream"] = buffer
    logging.config.dictConfig(config)
    try:
        yield buffer
    finally:
        logging.config.dictConfig(live.LOGGING)


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_every_log_path_is_masked_in_json_output(json_log):
    log = logging.getLogger("messaging.clients.green_api")
    url = f"http://127.0.0.1:8701/waInstance1101000001/sendMessage/{GREEN_TOKEN}"
    log.warning("POST %s failed for %s", url, CHAT)  # message arguments
    log.info(
        "calling",
        extra={
            "headers": {"Authorization": "Basic Zm9vOmJhcg==", "Content-Type": "application/json"},
            "chat_id": CHAT,
            "phone": "447700900123",
            "api_key": DEEPSEEK_KEY,
            "body": f'{{"password": "hunter2pass", "apiTokenInstance": "{GREEN_TOKEN}"}}',
        },
    )
    try:
        raise RuntimeError(f"Authorization: Bearer {WEBHOOK_TOKEN} refused for {PHONE}")
    except RuntimeError:
        log.exception("send failed with key %s", DEEPSEEK_KEY)  # exception text
    logging.getLogger("reliability.http").error(
        "stack", stack_info=True, extra={"note": f"token={GREEN_TOKEN}"}
    )

    output = json_log.getvalue()
    records = lines(json_log)
    assert len(records) == 4  # one JSON object per line
    for secret in SECRETS:
        assert secret not in output, secret
    assert "***4567@c.us" in output  # chat ids and phone numbers keep their last 4 digits
    assert "+***0123" in output
    assert records[1]["headers"]["Content-Type"] == "application/json"  # non-secrets untouched
    assert records[2]["level"] == "ERROR"
    assert "RuntimeError" in records[2]["exc_info"]
    assert {"time", "level", "logger", "message", "request_id"} <= set(records[0])


def test_request_id_reaches_every_record_of_a_request(json_log, client: Client):
    client.get("/health/live/", HTTP_X_REQUEST_ID="req-42")
    token = request_id.set("req-43")
    try:
        logging.getLogger("reliability.http").warning("dependency=green_api outcome=5xx")
    finally:
        request_id.reset(token)
    [record] = lines(json_log)
    assert record["request_id"] == "req-43"


def test_request_id_travels_from_the_publisher_into_the_task():
    headers: dict[str, str] = {}
    token = request_id.set("webhook-7")
    try:
        before_task_publish.send(sender="messaging.tasks.process_reply_job", headers=headers, body=())
    finally:
        request_id.reset(token)
    assert headers["request_id"] == "webhook-7"

    task = SimpleNamespace(request=SimpleNamespace(request_id=headers["request_id"], headers=None))
    task_prerun.send(sender=None, task_id="t-1", task=task, args=(), kwargs={})
    assert request_id.get() == "webhook-7"  # provider-call lines of the task carry it
    task_postrun.send(sender=None, task_id="t-1", task=task, args=(), kwargs={}, retval=None, state="SUCCESS")
    assert request_id.get() == ""

    untraced = SimpleNamespace(request=SimpleNamespace(headers=None))
    task_prerun.send(sender=None, task_id="t-2", task=untraced, args=(), kwargs={})
    assert request_id.get() == "task-t-2"  # beat's tasks get their own id
    task_postrun.send(sender=None, task_id="t-2", task=untraced, args=(), kwargs={}, retval=None, state="")


def test_console_format_stays_human_readable(settings):
    from django.conf import settings as live

    config: dict[str, Any] = live.LOGGING
    assert config["handlers"]["console"]["formatter"] == live.LOG_FORMAT == "console"
    assert "%(request_id)s" in config["formatters"]["console"]["format"]
